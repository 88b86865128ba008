import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { IamPolicy, ObjectStore } from "../types.ts";
import { PERMISSION_MESSAGE } from "./export-job.ts";
import { instancesChanged, type DicomStoreRecord, type OperationRecord, type StoreInstance } from "./model.ts";
import { isParseFailure, parseStoredInstance } from "./stored-instance.ts";

/** Roles that let the service agent list and read the source objects. */
const READER_ROLES = new Set(["roles/storage.objectViewer", "roles/storage.objectAdmin", "roles/storage.admin"]);

/** Whether the bucket policy lets `member` list and read objects, unconditionally. */
export function grantsImport(policy: IamPolicy | undefined, member: string): boolean {
  return (
    policy?.bindings.some((b) => READER_ROLES.has(b.role) && b.condition === undefined && b.members.includes(member)) ??
    false
  );
}

/**
 * `gcsSource.uri` wildcards as the Healthcare API documents them: `*` matches within one path
 * segment, `**` across segments (only at the end, optionally with an extension: `**.dcm`), `?`
 * one character. Returns the listing prefix (the text before the first wildcard) and a matcher.
 */
export function gcsWildcard(objectPattern: string): { prefix: string; test: (name: string) => boolean } {
  const first = objectPattern.search(/[*?]/);
  if (first === -1) return { prefix: objectPattern, test: (n) => n === objectPattern };
  const body = objectPattern.replace(/\*\*|[*?]|[.+^${}()|[\]\\/]/g, (t) =>
    t === "**" ? ".*" : t === "*" ? "[^/]*" : t === "?" ? "[^/]" : `\\${t}`,
  );
  const re = new RegExp(`^${body}$`, "s");
  return { prefix: objectPattern.slice(0, first), test: (n) => re.test(n) };
}

/** Adds or replaces an instance of a store; returns whether an instance of that SOP Instance UID was there. */
export function putInstance(store: DicomStoreRecord, inst: StoreInstance): boolean {
  const old = store.bySop.get(inst.sopInstanceUid);
  if (old !== undefined) {
    store.instances[store.instances.indexOf(old)] = inst;
    instancesChanged(store);
  } else store.instances.push(inst);
  store.bySop.set(inst.sopInstanceUid, inst);
  return old !== undefined;
}

export interface ImportJob {
  readonly op: OperationRecord;
  readonly store: DicomStoreRecord;
  readonly bucket: string;
  readonly pattern: string;
  readonly serviceAgent: string;
  readonly objects: ObjectStore;
  readonly now: () => Date;
  readonly onChange?: (final: boolean) => void;
  readonly signal?: AbortSignal;
}

/** Most files read in one go before yielding to the event loop. */
const BATCH = 32;
/** How many per-file errors the operation's error details carry (the real API sends a sample). */
const SAMPLE_ERRORS = 10;

/**
 * `dicomStores.import` from Cloud Storage: lists the objects the pattern matches, reads each
 * and stores it as it is (an instance already in the store is replaced). Each file counts as a
 * success or a failure (not DICOM, missing UIDs); an import with failures ends with an error
 * whose details sample the failed files, like the real service. A missing bucket is code 5, a
 * service agent without read access code 7, nothing matching code 5.
 */
export async function runImport(job: ImportJob): Promise<void> {
  const { op } = job;
  const errors: { resource: string; error: { code: number; message: string } }[] = [];
  const finish = (error?: { code: number; message: string }) => {
    op.done = true;
    op.counter.pending = 0;
    op.endTime = job.now().toISOString();
    if (error !== undefined) op.error = error;
    if (errors.length > 0)
      op.errorDetails = [
        {
          "@type": `type.googleapis.com/google.cloud.healthcare.${op.apiVersion}.dicom.ImportDicomDataErrorDetails`,
          sampleErrors: errors.slice(0, SAMPLE_ERRORS),
        },
      ];
    job.onChange?.(true);
  };
  await yieldToLoop();
  if (job.signal?.aborted) return;
  if (job.objects.getBucket(job.bucket) === undefined)
    return finish({ code: 5, message: `Cloud Storage bucket "${job.bucket}" does not exist.` });
  if (!grantsImport(job.objects.getPolicy(job.bucket), `serviceAccount:${job.serviceAgent}`))
    return finish({ code: 7, message: PERMISSION_MESSAGE });
  const { prefix, test } = gcsWildcard(job.pattern);
  const names: string[] = [];
  for (let after: string | undefined; ;) {
    const page = job.objects.listObjects(job.bucket, { prefix, limit: 1000, ...(after ? { startAfter: after } : {}) });
    for (const o of page) if (test(o.name) && !o.name.endsWith("/")) names.push(o.name);
    if (page.length < 1000) break;
    after = page.at(-1)!.name;
  }
  if (names.length === 0)
    return finish({ code: 5, message: `No files match gs://${job.bucket}/${job.pattern}; nothing was imported.` });
  op.counter = { success: 0, failure: 0, pending: names.length };
  job.onChange?.(false);
  for (const [i, name] of names.entries()) {
    if (op.cancelRequested) return finish({ code: 1, message: "Operation was cancelled." });
    const bytes = job.objects.readObject(job.bucket, name);
    const parsed = bytes === undefined ? undefined : parseStoredInstance(bytes);
    if (parsed === undefined || isParseFailure(parsed)) {
      op.counter.failure++;
      errors.push({
        resource: `gs://${job.bucket}/${name}`,
        error: { code: 3, message: parsed === undefined ? "the object disappeared during the import" : parsed.reason },
      });
    } else {
      putInstance(job.store, parsed);
      op.counter.success++;
    }
    op.counter.pending--;
    if ((i + 1) % BATCH === 0) {
      job.onChange?.(false);
      await yieldToLoop();
      if (job.signal?.aborted) return;
    }
  }
  if (op.counter.failure > 0)
    return finish({
      code: 13,
      message: `${op.counter.failure} of ${names.length} files failed to import; see the operation's error details and logs.`,
    });
  op.response = {
    "@type": `type.googleapis.com/google.cloud.healthcare.${op.apiVersion}.dicom.ImportDicomDataResponse`,
  };
  finish();
}
