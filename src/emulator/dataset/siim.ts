/** The SIIM-ACR Pneumothorax layout of the seed tutorial, as the local cloud serves it. */
export const SIIM = {
  project: "kaggle-siim-healthcare",
  /** The real source project's number: its service agent is the one the seed names. */
  projectNumber: "38125765871",
  location: "us-central1",
  dataset: "siim-pneumothorax",
  trainStore: "dicom-images-train",
  testStore: "dicom-images-test",
  fhirStore: "fhir-masks-train",
  documentReference: "d70d8f3e-990a-4bc0-b11f-c87349f5d4eb",
  serviceAgent: "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com",
  /** The real dataset's sizes. */
  realTrainCount: 10_712,
  realTestCount: 1_377,
} as const;

export const SIIM_DATASET_PATH = `projects/${SIIM.project}/locations/${SIIM.location}/datasets/${SIIM.dataset}`;
export const SIIM_TRAIN_STORE = `${SIIM_DATASET_PATH}/dicomStores/${SIIM.trainStore}`;
export const SIIM_TEST_STORE = `${SIIM_DATASET_PATH}/dicomStores/${SIIM.testStore}`;
export const SIIM_FHIR_STORE = `${SIIM_DATASET_PATH}/fhirStores/${SIIM.fhirStore}`;
