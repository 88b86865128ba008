import { OperationFailedError, UsageError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { parseTableUri, type BigQueryAdmin } from "../gcp/bigquery.ts";
import type { ExportOptions, HealthcareApi, Operation } from "../gcp/healthcare.ts";
import { grantBigQueryAccess, type GrantOptions } from "../workflow/bigquery-access.ts";
import { pollOperation, type OperationEvent, type PollOptions } from "../workflow/poll-operation.ts";
import { startExportOnce, type StartExportEvent } from "./start-export.ts";

/** The ports the BigQuery lane uses. */
export interface BigQueryLanePorts {
  readonly healthcare: HealthcareApi;
  readonly bigquery: BigQueryAdmin;
}

/** One store's BigQuery metadata export (the config's `exports[i].bigquery` with its store). */
export interface BigQueryEntry {
  readonly store: string;
  /** `bq://PROJECT.DATASET.TABLE` */
  readonly table: string;
  readonly writeDisposition?: NonNullable<ExportOptions["writeDisposition"]>;
  /** Location of a dataset hcexport creates (default: BigQuery's, US). */
  readonly location?: string;
}

export type BigQueryLaneEvent =
  | { readonly kind: "bigquery.dataset"; readonly dataset: string; readonly created: boolean }
  | { readonly kind: "bigquery.iam"; readonly project: string; readonly granted: readonly string[] }
  | { readonly kind: "bigquery.started"; readonly operation: string; readonly table: string }
  | { readonly kind: "bigquery.rows"; readonly table: string; readonly numRows: number }
  | StartExportEvent
  | OperationEvent;

export interface BigQueryLaneOptions {
  readonly serviceAgent: string;
  /** Grant the missing roles (else a missing role is the exit-3 error with the fix). */
  readonly grantIam: boolean;
  /** Wait for the operation and read the row count (default true). */
  readonly wait?: boolean;
  /** An operation a previous run started and recorded: resume waiting on it, start nothing. */
  readonly operation?: string;
  /**
   * At-most-once start (start-export.ts): when the first attempt was made, operations already
   * accounted for, and whether an earlier attempt may have reached the server.
   */
  readonly start?: { readonly since: string; readonly known: ReadonlySet<string>; readonly maybeStarted: boolean };
  /** Called before the POST (journal "starting") and with the name before polling (journal it). */
  readonly onStarting?: (since: string) => Promise<void> | void;
  readonly onStarted?: (operation: string) => Promise<void> | void;
  readonly onEvent?: EventSink<BigQueryLaneEvent>;
  readonly poll?: PollOptions;
  readonly grant?: GrantOptions;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

export interface BigQueryLaneResult {
  readonly operation: string;
  /** Rows in the table after the export (undefined with `wait: false`). */
  readonly numRows?: number;
  readonly datasetCreated: boolean;
  readonly granted: readonly string[];
  readonly done?: Operation;
}

/**
 * A DICOM store's metadata into BigQuery, as one workflow step: create the dataset if missing,
 * check (or grant) the service agent's dataEditor + jobUser, start the export at most once (adopting
 * an operation an interrupted attempt started), wait for it, and read the table's row count.
 * Idempotent up to the start; the start is at-most-once given `start`/`operation` from the journal.
 */
export async function exportToBigQuery(
  ports: BigQueryLanePorts,
  entry: BigQueryEntry,
  options: BigQueryLaneOptions,
): Promise<BigQueryLaneResult> {
  const t = parseTableUri(entry.table);
  if (!t.ok) throw new UsageError(t.error);
  const { project, dataset, table } = t.value;
  const emit = options.onEvent ?? (() => {});
  const now = options.now ?? (() => new Date());
  // The export creates the table but not the dataset; the dataset is also where access entries live.
  const created =
    (await ports.bigquery.getDataset(project, dataset)) === undefined &&
    (await ports.bigquery.createDataset(project, dataset, entry.location)).created;
  emit({ kind: "bigquery.dataset", dataset: `${project}:${dataset}`, created });
  const granted = await grantBigQueryAccess(
    ports.bigquery,
    { project, dataset, serviceAgent: options.serviceAgent },
    options.grantIam,
    options.grant,
  );
  emit({ kind: "bigquery.iam", project, granted });
  let name = options.operation;
  if (name === undefined) {
    const since = options.start?.since ?? now().toISOString();
    await options.onStarting?.(since);
    name = await startExportOnce(ports.healthcare, entry.store, entry.table, {
      since,
      known: options.start?.known ?? new Set(),
      maybeStarted: options.start?.maybeStarted ?? false,
      ...(entry.writeDisposition === undefined ? {} : { exportOptions: { writeDisposition: entry.writeDisposition } }),
      onEvent: emit,
    });
    await options.onStarted?.(name);
    emit({ kind: "bigquery.started", operation: name, table: entry.table });
  }
  if (options.wait === false) return { operation: name, datasetCreated: created, granted };
  const done = await pollOperation((n) => ports.healthcare.getOperation(n), name, {
    ...options.poll,
    onEvent: emit,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  }).catch((err: unknown) => {
    throw err instanceof OperationFailedError ? withBigQueryHint(err, entry.table, project) : err;
  });
  const info = await ports.bigquery.getTable(project, dataset, table);
  if (info === undefined) throw new Error(`${entry.table}: the export finished but the table does not exist`);
  const numRows = Number(info.numRows);
  emit({ kind: "bigquery.rows", table: entry.table, numRows });
  return { operation: name, numRows, datasetCreated: created, granted, done };
}

/** The poller's hints speak of buckets; a failed BigQuery export gets its own. */
function withBigQueryHint(err: OperationFailedError, table: string, project: string): OperationFailedError {
  const code = Number(/failed \(code (\d+)\)/.exec(err.message)?.[1] ?? "0");
  const hint =
    code === 7
      ? `the service agent lost roles/bigquery.dataEditor or roles/bigquery.jobUser on project ${project}: grant them again (--grant-iam), then run again`
      : code === 6
        ? `${table} already has rows: pass --write-disposition WRITE_TRUNCATE to replace them or WRITE_APPEND to add to them`
        : code === 5
          ? `the dataset of ${table} is gone: run again (hcexport creates it)`
          : err.hint;
  return new OperationFailedError(err.operation, err.message, {
    ...(hint === undefined ? {} : { hint }),
    ...(err.logsUrl === undefined ? {} : { logsUrl: err.logsUrl }),
    cause: err,
  });
}
