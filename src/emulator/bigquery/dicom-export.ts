import { setTimeout as delay } from "node:timers/promises";
import { ApiError } from "../http-util.ts";
import type { DicomStoreRecord, OperationRecord } from "../healthcare/model.ts";
import { instanceRow } from "./dicom-rows.ts";
import { missingExportRoles } from "./export-permission.ts";
import type { BigQueryModel } from "./model.ts";
import type { ProjectPolicies } from "./project-iam.ts";
import { mergeFields, type Row, type TableField } from "./table-schema.ts";

/** The message of the failed operation (modelled on the Cloud Storage one; the real BigQuery wording is not documented). */
export const BIGQUERY_PERMISSION_MESSAGE =
  "Healthcare API doesn't have required BigQuery permission. See https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products for more information";

export type WriteDisposition = "WRITE_EMPTY" | "WRITE_TRUNCATE" | "WRITE_APPEND";

export interface BigQueryDestination {
  readonly projectId: string;
  readonly datasetId: string;
  readonly tableId: string;
  /** What happens to an existing table; `strictEmpty`: `force` false/unset (an existing table fails even when empty). */
  readonly disposition: WriteDisposition;
  readonly strictEmpty: boolean;
}

const V1_FIELDS = ["tableUri", "force", "writeDisposition"];
const V1BETA1_FIELDS = [...V1_FIELDS, "schemaJson", "schemaFlattened", "changeDataCaptureConfig", "includeSourceStore"];

/** Validates `bigqueryDestination` (400 INVALID_ARGUMENT like the API); pure. */
export function parseBigQueryDestination(input: unknown, version: "v1" | "v1beta1"): BigQueryDestination {
  if (typeof input !== "object" || input === null || Array.isArray(input))
    throw bad("bigqueryDestination must be an object");
  const d = input as Record<string, unknown>;
  for (const key of Object.keys(d)) {
    if (!(version === "v1" ? V1_FIELDS : V1BETA1_FIELDS).includes(key))
      throw bad(`Invalid JSON payload received. Unknown name "${key}" at 'bigquery_destination': Cannot find field.`);
    if (!V1_FIELDS.includes(key) && key !== "schemaFlattened")
      throw new ApiError(
        501,
        "notImplemented",
        `the hcexport local cloud does not implement bigqueryDestination.${key}`,
        {
          rpcStatus: "UNIMPLEMENTED",
        },
      );
  }
  const uri = d["tableUri"];
  if (typeof uri !== "string" || uri === "") throw bad("bigqueryDestination.tableUri is required");
  const m = /^bq:\/\/([a-z][a-z0-9.:-]{4,127})\.([A-Za-z0-9_]{1,1024})\.([A-Za-z0-9_$-]{1,1024})$/.exec(uri);
  if (m === null || uri.length > 2000)
    throw bad(`invalid BigQuery table URI "${uri.slice(0, 200)}": expected bq://PROJECT_ID.DATASET_ID.TABLE_ID`);
  const wd = d["writeDisposition"];
  if (
    wd !== undefined &&
    !["WRITE_DISPOSITION_UNSPECIFIED", "WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"].includes(String(wd))
  )
    throw bad(
      `Invalid value at 'bigquery_destination.write_disposition' (type.googleapis.com/google.cloud.healthcare.${version}.dicom.DicomBigQueryDestination.WriteDisposition), ${JSON.stringify(wd)}`,
    );
  if (d["force"] !== undefined && typeof d["force"] !== "boolean")
    throw bad(`Invalid value at 'bigquery_destination.force' (TYPE_BOOL), ${JSON.stringify(d["force"])}`);
  // force is deprecated and ignored when writeDisposition is set: false = WRITE_EMPTY, true = WRITE_TRUNCATE.
  const explicit = wd !== undefined && wd !== "WRITE_DISPOSITION_UNSPECIFIED";
  const disposition = explicit ? (wd as WriteDisposition) : d["force"] === true ? "WRITE_TRUNCATE" : "WRITE_EMPTY";
  return {
    projectId: m[1]!,
    datasetId: m[2]!,
    tableId: m[3]!,
    disposition,
    strictEmpty: !explicit && disposition === "WRITE_EMPTY",
  };
}

function bad(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}

export interface BigQueryExportJob {
  readonly op: OperationRecord;
  readonly store: DicomStoreRecord;
  readonly destination: BigQueryDestination;
  /** `serviceAccount:service-N@gcp-sa-healthcare.iam.gserviceaccount.com` of the store's project. */
  readonly member: string;
  readonly bigquery: BigQueryModel;
  readonly policies: ProjectPolicies;
  /** Instances read per second (the same pacing as a Cloud Storage export). */
  readonly rate: number;
  readonly failureRate: () => number;
  readonly random: () => number;
  readonly now: () => Date;
  readonly onChange?: (final: boolean) => void;
  readonly signal?: AbortSignal;
}

const MAX_BATCH = 64;

/**
 * Runs a DICOM → BigQuery export: checks the dataset, the service agent's roles and the write
 * disposition, reads every instance into a row (paced at `rate`), then writes the table at once
 * like a load job (readers never see half a table). Errors: dataset missing (code 5), a role
 * missing (code 7), the table not empty under WRITE_EMPTY (code 6, ALREADY_EXISTS), cancelled
 * (code 1), failed instances (code 13, the other rows are written).
 */
export async function runBigQueryExport(job: BigQueryExportJob): Promise<void> {
  const { op, destination: dest } = job;
  const instances = job.store.instances;
  const total = instances.length;
  const ref = `${dest.projectId}:${dest.datasetId}.${dest.tableId}`;
  op.counter = { success: 0, failure: 0, pending: total };
  const finish = (error?: { code: number; message: string }) => {
    op.done = true;
    if (error?.code !== 1) op.counter.failure += op.counter.pending;
    op.counter.pending = 0;
    op.endTime = job.now().toISOString();
    if (error !== undefined) op.error = error;
    job.onChange?.(true);
  };
  const preconditions = (): { code: number; message: string } | undefined => {
    const dataset = job.bigquery.dataset(dest.projectId, dest.datasetId);
    if (dataset === undefined)
      return {
        code: 5,
        message: `BigQuery dataset ${dest.projectId}:${dest.datasetId} not found. Create it before exporting.`,
      };
    if (missingExportRoles(job.policies.get(dest.projectId), dataset.access, job.member).length > 0)
      return { code: 7, message: BIGQUERY_PERMISSION_MESSAGE };
    const table = dataset.tables.get(dest.tableId);
    if (dest.disposition === "WRITE_EMPTY" && table !== undefined && (dest.strictEmpty || table.rows.length > 0))
      return {
        code: 6,
        message: `BigQuery table ${ref} already exists${dest.strictEmpty ? "" : " and is not empty"}; export with writeDisposition WRITE_TRUNCATE (or force) to overwrite it, or WRITE_APPEND to add to it.`,
      };
    return undefined;
  };
  await delay(20);
  if (job.signal?.aborted) return;
  const failed = preconditions();
  if (failed !== undefined) return finish(failed);
  let fields: TableField[] = [];
  const rows: Row[] = [];
  const start = performance.now();
  let next = 0;
  while (next < total) {
    if (job.signal?.aborted) return;
    if (op.cancelRequested) return finish({ code: 1, message: "Operation was cancelled." });
    const due = Math.min(
      total,
      next + MAX_BATCH,
      Math.max(next + 1, Math.floor(((performance.now() - start) * job.rate) / 1000)),
    );
    for (; next < due; next++) {
      if (job.random() < job.failureRate()) op.counter.failure++;
      else {
        const { fields: f, row } = await instanceRow(instances[next]!.data());
        fields = mergeFields(fields, f);
        rows.push(row);
        op.counter.success++;
      }
      op.counter.pending--;
    }
    job.onChange?.(false);
    if (next < total) {
      const nextDueMs = ((next + 1) * 1000) / job.rate - (performance.now() - start);
      await delay(Math.max(1, Math.min(25, nextDueMs)));
    }
  }
  // Checked again at the end: a role revoked or a table filled meanwhile fails the load, as in BigQuery.
  const late = preconditions();
  if (late !== undefined) return finish(late);
  const dataset = job.bigquery.dataset(dest.projectId, dest.datasetId)!;
  const existing = dataset.tables.get(dest.tableId);
  const append = dest.disposition === "WRITE_APPEND" && existing !== undefined;
  job.bigquery.writeTable(dataset, dest.tableId, append ? mergeFields(existing.schema, fields) : fields, rows, append);
  if (op.counter.failure > 0)
    return finish({
      code: 13,
      message: `${op.counter.failure} of ${total} instances failed to export; see the operation's logs for each failure.`,
    });
  finish();
}
