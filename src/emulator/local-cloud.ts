import { annotationsCsv } from "./dataset/annotations.ts";
import { generateInstance, type GeneratedInstance } from "./dataset/instances.ts";
import { SIIM, SIIM_FHIR_STORE, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "./dataset/siim.ts";
import path from "node:path";
import { seededRandom } from "./faults.ts";
import { createHealthcareService, resumeExports, type HealthcareServiceOptions } from "./healthcare/service.ts";
import { HealthcareModel } from "./healthcare/model.ts";
import { createHealthcareResourcesService } from "./healthcare/resources.ts";
import { abortUnfinished, createHealthcareDataService } from "./healthcare/data-service.ts";
import { loadLocalStores, type LoadResult, type LoadSpec } from "./healthcare/load-local.ts";
import { siimPatient } from "./dataset/patients.ts";
import { sendMedia } from "./media.ts";
import { createResourceManagerService } from "./resource-manager.ts";
import { BigQueryModel } from "./bigquery/model.ts";
import { bigQueryExports } from "./bigquery/healthcare-exports.ts";
import { createProjectIamService, ProjectPolicies } from "./bigquery/project-iam.ts";
import { createBigQueryService } from "./bigquery/service.ts";
import { startEmulator, type EmulatorOptions, type RunningEmulator } from "./server.ts";
import { keepDigests } from "./healthcare/wado.ts";
import type { EmulatorService } from "./types.ts";

export interface DatasetOptions {
  readonly train: number;
  readonly test: number;
  readonly seed?: number;
  /** Approximate bytes per instance (default 8 KiB; the real images are ~150 KB). */
  readonly instanceBytes?: number;
  /**
   * Render every instance once, at start, and serve those bytes (`emulator --stored`), as a real
   * store serves what it holds; memory: (train + test) × instanceBytes. By default each request
   * renders its instance again, so memory stays flat in the dataset's size.
   */
  readonly stored?: boolean;
}

export interface LocalCloudOptions extends EmulatorOptions {
  /** Load the SIIM-shaped dataset (stores, FHIR annotations). */
  readonly dataset?: DatasetOptions;
  /** How fast exports write instances (default 100/s: ~1 s per 100 instances, so progress is visible). */
  readonly exportInstancesPerSecond?: number;
  /** Preload DICOM stores from local directories (`hcexport emulator --load STORE=DIR`). */
  readonly load?: readonly LoadSpec[];
}

export interface LocalCloud extends RunningEmulator {
  readonly healthcare: HealthcareModel;
  /** The emulated BigQuery (datasets, tables, rows) and the projects' IAM policies. */
  readonly bigquery: BigQueryModel;
  readonly projectPolicies: ProjectPolicies;
  /** The annotations CSV served as the DocumentReference's attachment ("" without a dataset). */
  readonly annotationsCsv: string;
  /** Where the attachment is served. */
  readonly annotationsUrl: string;
  /** What `load` put into each store. */
  readonly loaded: readonly LoadResult[];
}

/** Where the annotations CSV is served (the DocumentReference's attachment URL points here). */
export const ANNOTATIONS_PATH = "/_emulator/files/siim/train-rle.csv";
/** The operations journal inside `dataDir`, beside the object store's files. */
export const OPERATIONS_JOURNAL = "healthcare-operations.json";
export const DEFAULT_EXPORT_RATE = 100;

/**
 * The whole local cloud: storage, Healthcare API, Resource Manager and (optionally) the
 * SIIM-shaped dataset of the seed tutorial.
 */
export async function startLocalCloud(options: LocalCloudOptions = {}): Promise<LocalCloud> {
  const model = new HealthcareModel(
    options.dataDir === undefined
      ? {}
      : { journal: path.join(options.dataDir, OPERATIONS_JOURNAL), resourceDir: options.dataDir },
  );
  const extra = options.services;
  const bigquery = new BigQueryModel();
  let policies: ProjectPolicies | undefined;
  let hc: HealthcareServiceOptions | undefined;
  // The service reads faults through the running emulator (which only exists after the start).
  const live: { emulator?: RunningEmulator } = {};
  const faults = () => live.emulator!.faults;
  const emulator = await startEmulator({
    ...options,
    projects: { [SIIM.project]: SIIM.projectNumber, ...options.projects },
    services: (store, projects) => {
      policies = new ProjectPolicies(projects);
      hc = {
        model,
        objects: store,
        projects,
        exportInstancesPerSecond: options.exportInstancesPerSecond ?? DEFAULT_EXPORT_RATE,
        faults,
        bigquery: bigQueryExports(bigquery, policies, projects),
      };
      return [
        createHealthcareResourcesService(model),
        createHealthcareDataService(hc),
        createHealthcareService(hc),
        createResourceManagerService(projects),
        createProjectIamService(projects, policies),
        createBigQueryService(bigquery, projects),
        filesService(() => model.annotationsCsv()),
        ...(extra?.(store, projects) ?? []),
      ];
    },
  });
  live.emulator = emulator;
  if (options.dataset !== undefined) model.setAnnotationsCsv(loadSiim(model, options.dataset, emulator.baseUrl));
  resumeExports(hc!, seededRandom(options.faults?.seed ?? 1), faults);
  abortUnfinished(model);
  let loaded: LoadResult[];
  try {
    loaded = await loadLocalStores(model, emulator.projects, options.load ?? []);
  } catch (err) {
    await model.stop();
    await emulator.close();
    throw err;
  }
  const close = emulator.close;
  return Object.assign(emulator, {
    healthcare: model,
    bigquery,
    projectPolicies: policies!,
    annotationsCsv: model.annotationsCsv(),
    annotationsUrl: `${emulator.baseUrl}${ANNOTATIONS_PATH}`,
    loaded,
    close: async () => {
      await model.stop();
      await close();
    },
  });
}

/**
 * The instance with its bytes rendered now and kept: every `data()` returns the same Buffer, and
 * its digests are remembered (its CRC32C computed now, not at the first `Repr-Digest`).
 */
export function storedInstance(inst: GeneratedInstance): GeneratedInstance {
  const bytes = inst.data();
  keepDigests(bytes);
  return { ...inst, data: () => bytes };
}

/** Creates the SIIM stores and the FHIR DocumentReference; returns the annotations CSV. */
export function loadSiim(model: HealthcareModel, d: DatasetOptions, baseUrl: string): string {
  const seed = d.seed ?? 1;
  const instanceBytes = d.instanceBytes ?? 8 * 1024;
  const make = (count: number, storeIndex: number): GeneratedInstance[] =>
    Array.from({ length: count }, (_, i) => {
      const inst = generateInstance(i, { seed, instanceBytes, storeIndex });
      return d.stored === true ? storedInstance(inst) : inst;
    });
  const train = make(d.train, 0);
  model.addDicomStore(SIIM_TRAIN_STORE, train);
  model.addDicomStore(SIIM_TEST_STORE, make(d.test, 1));
  const csv = annotationsCsv(train, seed);
  const fhir = model.addFhirStore(SIIM_FHIR_STORE);
  fhir.resources.set(`DocumentReference/${SIIM.documentReference}`, {
    resourceType: "DocumentReference",
    id: SIIM.documentReference,
    meta: { lastUpdated: "2019-06-01T00:00:00+00:00", versionId: "MTU1OTM0NzIwMDAwMDAwMDAwMA" },
    status: "current",
    description: "SIIM-ACR Pneumothorax Segmentation: training annotations (run-length encoded masks)",
    content: [
      {
        attachment: {
          contentType: "text/csv",
          url: `${baseUrl}${ANNOTATIONS_PATH}`,
          title: "train-rle.csv",
          size: Buffer.byteLength(csv),
        },
      },
    ],
  });
  for (const inst of train) fhir.resources.set(`Patient/${inst.patientId}`, siimPatient(inst));
  for (const name of [SIIM_TRAIN_STORE, SIIM_TEST_STORE, SIIM_FHIR_STORE]) model.generated.add(name);
  return csv;
}

function filesService(csv: () => string): EmulatorService {
  return {
    async handle(req, res, url, ctx) {
      if (url.pathname !== ANNOTATIONS_PATH || (req.method !== "GET" && req.method !== "HEAD")) return false;
      sendMedia(req, res, Buffer.from(csv()), { "content-type": "text/csv; charset=utf-8" }, ctx);
      return true;
    },
  };
}
