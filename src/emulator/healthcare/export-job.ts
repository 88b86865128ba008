import { setTimeout as delay } from "node:timers/promises";
import type { ObjectStore } from "../types.ts";
import { exportObjects, type ExportFormat } from "./export-formats.ts";
import type { DicomStoreRecord, OperationRecord } from "./model.ts";

export const PERMISSION_MESSAGE =
  "Healthcare API doesn't have required Cloud Storage permission. See https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products for more information";

/** Roles that let the service agent overwrite objects (objectCreator is not enough). */
const WRITER_ROLES = new Set(["roles/storage.objectAdmin", "roles/storage.admin"]);

/** Roles that hold storage.objects.get: what reading the filter file takes (roles/storage.objectViewer at least). */
const READER_ROLES = new Set([
  "roles/storage.objectViewer",
  "roles/storage.objectAdmin",
  "roles/storage.admin",
  "roles/storage.legacyObjectReader",
  "roles/storage.legacyObjectOwner",
]);

/**
 * Reads a DicomFilterConfig file (`\n` or `\r\n` separated `/studies/S[/series/SE[/instances/I]]`)
 * as the service agent: a missing bucket or object (5), no read permission (7) or a malformed
 * line (3) fails the operation; otherwise, which instances it selects.
 */
export function readFilter(
  objects: ObjectStore,
  uri: string,
  member: string,
):
  | { ok: true; matches: (i: { studyUid: string; seriesUid: string; sopInstanceUid: string }) => boolean }
  | { ok: false; error: { code: number; message: string } } {
  const m = /^gs:\/\/([^/]+)\/(.+)$/.exec(uri);
  const policy = m === null ? undefined : objects.getPolicy(m[1]!);
  const data = m === null ? undefined : objects.readObject(m[1]!, m[2]!);
  if (data === undefined) return { ok: false, error: { code: 5, message: `filter file ${uri} not found` } };
  const canRead = policy?.bindings.some(
    (b) => READER_ROLES.has(b.role) && b.condition === undefined && b.members.includes(member),
  );
  if (canRead !== true)
    return {
      ok: false,
      error: { code: 7, message: `the service agent lacks storage.objects.get on ${uri} (roles/storage.objectViewer)` },
    };
  const paths = new Set<string>();
  for (const line of data.toString("utf8").split(/\r?\n/)) {
    if (line === "") continue;
    const p = /^\/studies\/([0-9.]{1,64})(?:\/series\/([0-9.]{1,64})(?:\/instances\/([0-9.]{1,64}))?)?$/.exec(line);
    if (p === null)
      return { ok: false, error: { code: 3, message: `invalid resource path in ${uri}: ${line.slice(0, 200)}` } };
    paths.add(line);
  }
  return {
    ok: true,
    matches: (i) =>
      paths.has(`/studies/${i.studyUid}`) ||
      paths.has(`/studies/${i.studyUid}/series/${i.seriesUid}`) ||
      paths.has(`/studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopInstanceUid}`),
  };
}

/** Whether the bucket policy grants `member` a role that can create and overwrite objects, unconditionally. */
export function grantsExport(
  policy: { bindings: { role: string; members: string[]; condition?: unknown }[] } | undefined,
  member: string,
): boolean {
  return (
    policy?.bindings.some((b) => WRITER_ROLES.has(b.role) && b.condition === undefined && b.members.includes(member)) ??
    false
  );
}

export interface ExportJob {
  readonly op: OperationRecord;
  readonly store: DicomStoreRecord;
  readonly bucket: string;
  /** Object prefix without trailing slash ("" for the bucket root). */
  readonly prefix: string;
  readonly serviceAgent: string;
  readonly objects: ObjectStore;
  /** What each instance becomes (`gcsDestination.mimeType`); default: the files as stored. */
  readonly format?: ExportFormat;
  /** `filterConfig.resourcePathsGcsUri`: a file in the object store listing what to export. */
  readonly filter?: string;
  /** Instances written per second. */
  readonly rate: number;
  /** Read per instance so faults can change mid-export. */
  readonly failureRate: () => number;
  readonly random: () => number;
  readonly now: () => Date;
  /** Called after each change of the operation (`final` at its end), e.g. to persist it. */
  readonly onChange?: (final: boolean) => void;
  /** Aborted when the emulator shuts down: the job stops without finishing the operation. */
  readonly signal?: AbortSignal;
}

/** Longest pause between checks for a cancel request, ms. */
const MAX_SLEEP_MS = 25;
/** Most instances written in one go before yielding to the event loop. */
const MAX_BATCH = 64;

/**
 * Runs an export asynchronously: checks the bucket and the service agent's role, then writes
 * `PREFIX/STUDY/SERIES/INSTANCE.dcm` objects at `rate` per second (paced on the wall clock, so
 * 100 instances at 100/s take about a second), updating the counters.
 * Ends with an error when the bucket is missing (code 5), when the permission is missing or
 * revoked mid-way (code 7, the real service's message), when cancelled (code 1), or when some
 * instances failed (code 13, counter.failure > 0): the real service reports per-instance failures
 * in Cloud Logging and ends such an operation with `error` instead of `response`.
 */
export async function runExport(job: ExportJob): Promise<void> {
  const { op } = job;
  let instances = job.store.instances;
  let total = instances.length;
  const member = `serviceAccount:${job.serviceAgent}`;
  op.counter = { success: 0, failure: 0, pending: total };
  const finish = (error?: { code: number; message: string }) => {
    op.done = true;
    // Instances never attempted count as failed, except after a cancel (they were not tried).
    if (error?.code !== 1) op.counter.failure += op.counter.pending;
    op.counter.pending = 0;
    op.endTime = job.now().toISOString();
    if (error !== undefined) op.error = error;
    job.onChange?.(true);
  };
  await delay(20);
  if (job.signal?.aborted) return;
  if (job.objects.getBucket(job.bucket) === undefined) {
    return finish({
      code: 5,
      message: `Cloud Storage bucket "${job.bucket}" does not exist. Create it before exporting.`,
    });
  }
  if (!grantsExport(job.objects.getPolicy(job.bucket), member)) return finish({ code: 7, message: PERMISSION_MESSAGE });
  if (job.filter !== undefined) {
    const read = readFilter(job.objects, job.filter, member);
    if (!read.ok) {
      op.counter.pending = 0;
      return finish(read.error);
    }
    instances = instances.filter(read.matches);
    total = instances.length;
    op.counter.pending = total;
    job.onChange?.(false);
  }
  const start = performance.now();
  let next = 0;
  while (next < total) {
    if (job.signal?.aborted) return;
    if (op.cancelRequested) return finish({ code: 1, message: "Operation was cancelled." });
    if (!grantsExport(job.objects.getPolicy(job.bucket), member))
      return finish({ code: 7, message: PERMISSION_MESSAGE });
    const due = Math.min(total, next + MAX_BATCH, Math.floor(((performance.now() - start) * job.rate) / 1000));
    const batchStart = performance.now();
    // Converting (PNG, JPEG) costs milliseconds per instance: yield to the event loop every ~20 ms.
    for (; next < due && performance.now() - batchStart < 20; next++) {
      const inst = instances[next]!;
      if (job.random() < job.failureRate()) op.counter.failure++;
      else {
        try {
          const objects = exportObjects(inst, job.format ?? { kind: "dicom", transferSyntax: "*" });
          for (const o of objects)
            job.objects.putObject(
              job.bucket,
              `${job.prefix === "" ? "" : `${job.prefix}/`}${o.name}`,
              o.data,
              o.contentType,
            );
          op.counter.success++;
        } catch {
          // An instance that cannot be converted (e.g. no pixel data for image/png) fails alone, as in the real API.
          op.counter.failure++;
        }
      }
      op.counter.pending--;
    }
    job.onChange?.(false);
    if (next < total) {
      const nextDueMs = ((next + 1) * 1000) / job.rate - (performance.now() - start);
      await delay(Math.max(1, Math.min(MAX_SLEEP_MS, nextDueMs)));
    }
  }
  if (op.counter.failure > 0) {
    return finish({
      code: 13,
      message: `${op.counter.failure} of ${total} instances failed to export; see the operation's logs for each failure.`,
    });
  }
  finish();
}
