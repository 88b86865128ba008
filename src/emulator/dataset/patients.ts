import type { GeneratedInstance } from "./instances.ts";

/**
 * A FHIR R4 Patient per generated image (SIIM's anonymised patients: a UUID as id and as the
 * DICOM PatientID, sex and age from the image), deterministic, so FHIR search and export have
 * more than one resource to page through.
 */
export function siimPatient(i: GeneratedInstance): Record<string, unknown> {
  return {
    resourceType: "Patient",
    id: i.patientId,
    meta: { lastUpdated: "2019-06-01T00:00:00+00:00", versionId: "MTU1OTM0NzIwMDAwMDAwMDAwMA" },
    identifier: [{ system: "urn:dicom:patient-id", value: i.patientId }],
    gender: i.patientSex === "M" ? "male" : "female",
    extension: [
      {
        url: "http://hl7.org/fhir/StructureDefinition/patient-age",
        valueAge: { value: i.patientAge, unit: "a", system: "http://unitsofmeasure.org", code: "a" },
      },
    ],
  };
}
