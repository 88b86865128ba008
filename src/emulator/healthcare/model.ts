import type { GeneratedInstance } from "../dataset/instances.ts";
import { IamPolicies } from "./iam-policies.ts";
import { loadResources, saveResources } from "./resource-journal.ts";
import { loadOperations, saveOperations } from "./operation-journal.ts";
import type { StoredInstance } from "./stored-instance.ts";

/** An instance of a store: generated (SIIM, bytes made on demand) or stored (a user's own bytes). */
export type StoreInstance = GeneratedInstance | StoredInstance;

/** An emulated DICOM store: its instances and its resource fields (labels, notificationConfig, streamConfigs). */
export interface DicomStoreRecord {
  readonly name: string;
  readonly instances: StoreInstance[];
  readonly bySop: Map<string, StoreInstance>;
  /** The DicomStore resource's fields other than `name`, as the client set them. */
  config: Record<string, unknown>;
}

/** A FHIR store: resources by `Type/id`, and its resource fields (version, labels, …). */
export interface FhirStoreRecord {
  readonly name: string;
  readonly resources: Map<string, Record<string, unknown>>;
  config: Record<string, unknown>;
}

/** A dataset: its resource fields other than `name` (timeZone, encryptionSpec). */
export interface DatasetRecord {
  readonly name: string;
  config: Record<string, unknown>;
}

export interface OperationCounter {
  success: number;
  failure: number;
  pending: number;
}

/** A long-running operation as the emulator tracks it. */
export interface OperationRecord {
  readonly name: string;
  readonly id: string;
  readonly dataset: string;
  readonly apiVersion: "v1" | "v1beta1";
  readonly method: string;
  readonly createTime: string;
  endTime?: string;
  done: boolean;
  cancelRequested: boolean;
  counter: OperationCounter;
  error?: { code: number; message: string };
  /** The export's source store and destination, for tests. */
  readonly source: string;
  readonly destination: string;
  /** `gcsDestination.mimeType`, when given. */
  readonly mimeType?: string;
  /** `filterConfig.resourcePathsGcsUri` (v1beta1), when given: only the instances it lists are exported. */
  readonly filter?: string;
  /** The `response` of a finished operation (default: ExportDicomDataResponse). */
  response?: Record<string, unknown>;
  /** `error.details` (e.g. ImportDicomDataErrorDetails). */
  errorDetails?: unknown[];
}

/**
 * The instances of one study, in the store's order, from an index built at the first lookup and
 * again whenever the store's instances change (a new length, or `instancesChanged`). A study's
 * WADO or QIDO request used to filter every instance of the store: a per-study pull of 10,000
 * single-instance studies made 10^8 comparisons, 14–24 s of the local cloud's CPU.
 */
export function studyInstances(store: DicomStoreRecord, study: string): readonly StoreInstance[] {
  let index = studyIndexes.get(store.instances);
  if (index === undefined || index.length !== store.instances.length) {
    const byStudy = new Map<string, StoreInstance[]>();
    for (const inst of store.instances) {
      const list = byStudy.get(inst.studyUid);
      if (list === undefined) byStudy.set(inst.studyUid, [inst]);
      else list.push(inst);
    }
    index = { length: store.instances.length, byStudy };
    studyIndexes.set(store.instances, index);
  }
  return index.byStudy.get(study) ?? [];
}

/** Drops a store's study index after an instance was replaced in place (the length unchanged). */
export function instancesChanged(store: DicomStoreRecord): void {
  studyIndexes.delete(store.instances);
}

const studyIndexes = new WeakMap<readonly StoreInstance[], { length: number; byStudy: Map<string, StoreInstance[]> }>();

/** The state of the emulated Healthcare API: stores, operations and the annotations CSV. */
export class HealthcareModel {
  readonly dicomStores = new Map<string, DicomStoreRecord>();
  readonly fhirStores = new Map<string, FhirStoreRecord>();
  readonly datasets = new Map<string, DatasetRecord>();
  /** Stores the dataset generator made (`--dataset siim`): made again at each start, so never saved. */
  readonly generated = new Set<string>();
  /** IAM policies of datasets and stores. */
  readonly iam = new IamPolicies();
  readonly #operations = new Map<string, OperationRecord>();
  #nextOperation = 1_000_000_000_000_000_000n;
  #csv = "";
  readonly #journal: string | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  readonly #jobs = new Set<Promise<void>>();
  /** Aborted when the emulator closes: running exports stop where they are (as if the process died). */
  readonly shutdown = new AbortController();

  readonly #resourceDir: string | undefined;
  #resourceTimer: NodeJS.Timeout | undefined;

  /**
   * @param journal a JSON file keeping the operations across restarts (omit: in memory only)
   * @param resourceDir a directory keeping datasets, stores, IAM policies and stored instances
   */
  constructor(options: { journal?: string; resourceDir?: string } = {}) {
    this.#journal = options.journal;
    this.#resourceDir = options.resourceDir;
    if (this.#resourceDir !== undefined) loadResources(this.#resourceDir, this);
    if (this.#journal === undefined) return;
    for (const op of loadOperations(this.#journal)) {
      this.#operations.set(op.name, op);
      if (BigInt(op.id) >= this.#nextOperation) this.#nextOperation = BigInt(op.id) + 1n;
    }
  }

  /** Records that datasets, stores, policies or instances changed: saved within 200 ms (and on stop). */
  resourcesChanged(): void {
    if (this.#resourceDir === undefined) return;
    this.#resourceTimer ??= setTimeout(() => this.#saveResources(), 200).unref();
  }

  #saveResources(): void {
    if (this.#resourceTimer !== undefined) clearTimeout(this.#resourceTimer);
    this.#resourceTimer = undefined;
    if (this.#resourceDir !== undefined) saveResources(this.#resourceDir, this);
  }

  addDicomStore(name: string, instances: StoreInstance[], config: Record<string, unknown> = {}): DicomStoreRecord {
    this.ensureDataset(datasetOf(name));
    const rec = { name, instances, bySop: new Map(instances.map((i) => [i.sopInstanceUid, i])), config };
    this.dicomStores.set(name, rec);
    return rec;
  }

  addFhirStore(name: string, config: Record<string, unknown> = { version: "R4" }): FhirStoreRecord {
    this.ensureDataset(datasetOf(name));
    const rec = { name, resources: new Map<string, Record<string, unknown>>(), config };
    this.fhirStores.set(name, rec);
    return rec;
  }

  /** The dataset of that name, created (with no fields set) if absent. */
  ensureDataset(name: string): DatasetRecord {
    let rec = this.datasets.get(name);
    if (rec === undefined) this.datasets.set(name, (rec = { name, config: { timeZone: "UTC" } }));
    return rec;
  }

  /** Instances of a store (by full resource name), for tests that compare bytes. */
  instances(storeName: string): readonly StoreInstance[] {
    return this.dicomStores.get(storeName)?.instances ?? [];
  }

  /** The annotations CSV (SIIM's train-rle.csv shape) served as the DocumentReference's attachment. */
  annotationsCsv(): string {
    return this.#csv;
  }

  setAnnotationsCsv(csv: string): void {
    this.#csv = csv;
  }

  newOperation(
    init: Omit<OperationRecord, "name" | "id" | "done" | "cancelRequested" | "createTime">,
    now: Date,
  ): OperationRecord {
    const id = (this.#nextOperation++).toString();
    const op: OperationRecord = {
      ...init,
      id,
      name: `${init.dataset}/operations/${id}`,
      done: false,
      cancelRequested: false,
      createTime: now.toISOString(),
    };
    this.#operations.set(op.name, op);
    this.changed(true);
    return op;
  }

  operation(name: string): OperationRecord | undefined {
    return this.#operations.get(name);
  }

  /** All operations, oldest first (optionally of one dataset). */
  operations(dataset?: string): OperationRecord[] {
    return [...this.#operations.values()].filter((o) => dataset === undefined || o.dataset === dataset);
  }

  /**
   * Records that an operation changed: saved at once when `now` (creation, end), otherwise
   * within 200 ms (progress), so a poller sees the same state after an emulator restart.
   */
  changed(now = false): void {
    if (this.#journal === undefined) return;
    if (now) {
      this.flush();
      return;
    }
    this.#saveTimer ??= setTimeout(() => this.flush(), 200).unref();
  }

  /** Tracks a running job so that `stop` can wait for it. */
  track(job: Promise<void>): void {
    this.#jobs.add(job);
    void job.finally(() => this.#jobs.delete(job));
  }

  /** Stops running exports (they stay unfinished, to be resumed by the next start) and saves the journal. */
  async stop(): Promise<void> {
    this.shutdown.abort();
    await Promise.allSettled([...this.#jobs]);
    this.flush();
  }

  /** Writes the journals now (also on close). */
  flush(): void {
    if (this.#resourceTimer !== undefined) this.#saveResources();
    if (this.#saveTimer !== undefined) clearTimeout(this.#saveTimer);
    this.#saveTimer = undefined;
    if (this.#journal !== undefined) saveOperations(this.#journal, this.operations());
  }
}

/** The Operation JSON of the Healthcare API (proto3 JSON: int64 as strings, defaults omitted). */
export function operationJson(op: OperationRecord): Record<string, unknown> {
  const pkg = `google.cloud.healthcare.${op.apiVersion}`;
  const counter: Record<string, string> = {};
  if (op.counter.success > 0) counter["success"] = String(op.counter.success);
  if (op.counter.failure > 0) counter["failure"] = String(op.counter.failure);
  if (op.counter.pending > 0) counter["pending"] = String(op.counter.pending);
  const metadata: Record<string, unknown> = {
    "@type": `type.googleapis.com/${pkg}.OperationMetadata`,
    apiMethodName: `${pkg}.${op.method}`,
    createTime: op.createTime,
    ...(op.endTime === undefined ? {} : { endTime: op.endTime }),
    ...(op.cancelRequested ? { cancelRequested: true } : {}),
    logsUrl: `https://console.cloud.google.com/logs/query/${encodeURIComponent(`resource.type="healthcare_dataset" AND operation.id="${op.id}"`)}`,
    ...(Object.keys(counter).length > 0 ? { counter } : {}),
  };
  const out: Record<string, unknown> = { name: op.name, metadata };
  if (op.done) {
    out["done"] = true;
    if (op.error !== undefined)
      out["error"] = op.errorDetails === undefined ? op.error : { ...op.error, details: op.errorDetails };
    else out["response"] = op.response ?? { "@type": `type.googleapis.com/${pkg}.dicom.ExportDicomDataResponse` };
  }
  return out;
}

/** `projects/P/locations/L/datasets/D` of a store name. */
export function datasetOf(storeName: string): string {
  return storeName.split("/").slice(0, 6).join("/");
}
