import type { GeneratedInstance } from "../dataset/instances.ts";
import { loadOperations, saveOperations } from "./operation-journal.ts";

/** An emulated DICOM store: its instances (UIDs in memory, bytes generated on demand). */
export interface DicomStoreRecord {
  readonly name: string;
  readonly instances: GeneratedInstance[];
  readonly bySop: Map<string, GeneratedInstance>;
}

/** A FHIR store: resources by `Type/id`. */
export interface FhirStoreRecord {
  readonly name: string;
  readonly resources: Map<string, Record<string, unknown>>;
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
}

/** The state of the emulated Healthcare API: stores, operations and the annotations CSV. */
export class HealthcareModel {
  readonly dicomStores = new Map<string, DicomStoreRecord>();
  readonly fhirStores = new Map<string, FhirStoreRecord>();
  readonly #operations = new Map<string, OperationRecord>();
  #nextOperation = 1_000_000_000_000_000_000n;
  #csv = "";
  readonly #journal: string | undefined;
  #saveTimer: NodeJS.Timeout | undefined;
  readonly #jobs = new Set<Promise<void>>();
  /** Aborted when the emulator closes: running exports stop where they are (as if the process died). */
  readonly shutdown = new AbortController();

  /** @param journal a JSON file keeping the operations across restarts (omit: in memory only) */
  constructor(options: { journal?: string } = {}) {
    this.#journal = options.journal;
    if (this.#journal === undefined) return;
    for (const op of loadOperations(this.#journal)) {
      this.#operations.set(op.name, op);
      if (BigInt(op.id) >= this.#nextOperation) this.#nextOperation = BigInt(op.id) + 1n;
    }
  }

  addDicomStore(name: string, instances: GeneratedInstance[]): DicomStoreRecord {
    const rec = { name, instances, bySop: new Map(instances.map((i) => [i.sopInstanceUid, i])) };
    this.dicomStores.set(name, rec);
    return rec;
  }

  addFhirStore(name: string): FhirStoreRecord {
    const rec = { name, resources: new Map<string, Record<string, unknown>>() };
    this.fhirStores.set(name, rec);
    return rec;
  }

  /** Instances of a store (by full resource name), for tests that compare bytes. */
  instances(storeName: string): readonly GeneratedInstance[] {
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

  /** Writes the journal now (also on close). */
  flush(): void {
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
    if (op.error !== undefined) out["error"] = op.error;
    else out["response"] = { "@type": `type.googleapis.com/${pkg}.dicom.ExportDicomDataResponse` };
  }
  return out;
}
