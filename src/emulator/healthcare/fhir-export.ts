import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { ObjectStore } from "../types.ts";
import { grantsExport, PERMISSION_MESSAGE } from "./export-job.ts";
import type { FhirStoreRecord, OperationRecord } from "./model.ts";

export interface FhirExportJob {
  readonly op: OperationRecord;
  readonly store: FhirStoreRecord;
  readonly bucket: string;
  /** Object prefix without trailing slash ("" for the bucket root). */
  readonly prefix: string;
  /** `_type`: only these resource types (empty: all). */
  readonly types: readonly string[];
  /** `_since`: only resources updated after this instant. */
  readonly since?: Date;
  readonly serviceAgent: string;
  readonly objects: ObjectStore;
  readonly now: () => Date;
  readonly onChange?: (final: boolean) => void;
}

/**
 * `fhirStores.export` to Cloud Storage: one object per resource type, named
 * `PREFIX/ResourceType`, holding newline-delimited JSON (one resource per line), written only if
 * the store project's service agent may write objects into the bucket (as for DICOM exports).
 * The counter counts resources.
 */
export async function runFhirExport(job: FhirExportJob): Promise<void> {
  const { op } = job;
  const finish = (error?: { code: number; message: string }) => {
    op.done = true;
    op.counter.pending = 0;
    op.endTime = job.now().toISOString();
    if (error !== undefined) op.error = error;
    else
      op.response = {
        "@type": `type.googleapis.com/google.cloud.healthcare.${op.apiVersion}.fhir.ExportResourcesResponse`,
      };
    job.onChange?.(true);
  };
  await yieldToLoop();
  if (job.objects.getBucket(job.bucket) === undefined)
    return finish({
      code: 5,
      message: `Cloud Storage bucket "${job.bucket}" does not exist. Create it before exporting.`,
    });
  if (!grantsExport(job.objects.getPolicy(job.bucket), `serviceAccount:${job.serviceAgent}`))
    return finish({ code: 7, message: PERMISSION_MESSAGE });
  const byType = new Map<string, string[]>();
  for (const r of job.store.resources.values()) {
    const type = String(r["resourceType"]);
    if (job.types.length > 0 && !job.types.includes(type)) continue;
    const updated = (r["meta"] as { lastUpdated?: string } | undefined)?.lastUpdated;
    if (job.since !== undefined && (updated === undefined || new Date(updated) <= job.since)) continue;
    let lines = byType.get(type);
    if (lines === undefined) byType.set(type, (lines = []));
    lines.push(JSON.stringify(r));
  }
  op.counter = { success: 0, failure: 0, pending: [...byType.values()].reduce((n, l) => n + l.length, 0) };
  for (const [type, lines] of [...byType].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const name = `${job.prefix === "" ? "" : `${job.prefix}/`}${type}`;
    job.objects.putObject(job.bucket, name, Buffer.from(`${lines.join("\n")}\n`), "application/fhir+ndjson");
    op.counter.success += lines.length;
    op.counter.pending -= lines.length;
    job.onChange?.(false);
    await yieldToLoop();
  }
  finish();
}
