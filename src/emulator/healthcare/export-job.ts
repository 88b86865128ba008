import { setTimeout as delay } from "node:timers/promises";
import type { ObjectStore } from "../types.ts";
import type { DicomStoreRecord, OperationRecord } from "./model.ts";

export const PERMISSION_MESSAGE =
  "Healthcare API doesn't have required Cloud Storage permission. See https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products for more information";

/** Roles that let the service agent overwrite objects (objectCreator is not enough). */
const WRITER_ROLES = new Set(["roles/storage.objectAdmin", "roles/storage.admin"]);

/** Whether the bucket policy grants `member` a role that can create and overwrite objects, unconditionally. */
export function grantsExport(policy: { bindings: { role: string; members: string[]; condition?: unknown }[] } | undefined, member: string): boolean {
  return policy?.bindings.some((b) => WRITER_ROLES.has(b.role) && b.condition === undefined && b.members.includes(member)) ?? false;
}

export interface ExportJob {
  readonly op: OperationRecord;
  readonly store: DicomStoreRecord;
  readonly bucket: string;
  /** Object prefix without trailing slash ("" for the bucket root). */
  readonly prefix: string;
  readonly serviceAgent: string;
  readonly objects: ObjectStore;
  /** Instances written per second. */
  readonly rate: number;
  /** Read per instance so faults can change mid-export. */
  readonly failureRate: () => number;
  readonly random: () => number;
  readonly now: () => Date;
}

/**
 * Runs an export asynchronously: checks the bucket and the service agent's role, then writes
 * `PREFIX/STUDY/SERIES/INSTANCE.dcm` objects at `rate` per second, updating the counters.
 * Ends with an error when the permission is missing (code 7), when cancelled (code 1), or when
 * some instances failed (code 13, counter.failure > 0).
 */
export async function runExport(job: ExportJob): Promise<void> {
  const { op } = job;
  const total = job.store.instances.length;
  op.counter = { success: 0, failure: 0, pending: total };
  const finish = (error?: { code: number; message: string }) => {
    op.done = true;
    op.counter.pending = 0;
    op.endTime = job.now().toISOString();
    if (error !== undefined) op.error = error;
  };
  await delay(20);
  if (job.objects.getBucket(job.bucket) === undefined) {
    op.counter.failure = total;
    return finish({ code: 5, message: `Cloud Storage bucket "${job.bucket}" does not exist. Create it before exporting.` });
  }
  if (!grantsExport(job.objects.getPolicy(job.bucket), `serviceAccount:${job.serviceAgent}`)) {
    op.counter.failure = total;
    return finish({ code: 7, message: PERMISSION_MESSAGE });
  }
  const tickMs = 20;
  const perTick = Math.max(1, Math.round((job.rate * tickMs) / 1000));
  for (let i = 0; i < total; i += perTick) {
    if (op.cancelRequested) return finish({ code: 1, message: "Operation was cancelled." });
    for (const inst of job.store.instances.slice(i, i + perTick)) {
      if (job.random() < job.failureRate()) op.counter.failure++;
      else {
        const name = `${job.prefix === "" ? "" : `${job.prefix}/`}${inst.studyUid}/${inst.seriesUid}/${inst.sopInstanceUid}.dcm`;
        job.objects.putObject(job.bucket, name, inst.data(), "application/dicom");
        op.counter.success++;
      }
      op.counter.pending--;
    }
    await delay(tickMs);
  }
  if (op.counter.failure > 0) {
    return finish({ code: 13, message: `${op.counter.failure} of ${total} instances failed to export; see the operation's logs for each failure.` });
  }
  finish();
}
