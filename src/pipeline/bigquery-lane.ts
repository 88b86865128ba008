import { OperationFailedError, UsageError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { parseTableUri, type BigQueryAdmin } from "../gcp/bigquery.ts";
import type { ExportOptions, HealthcareApi, Operation } from "../gcp/healthcare.ts";
import { BIGQUERY_ROLES, grantBigQueryAccess, type GrantOptions } from "../workflow/bigquery-access.ts";
import { memberOf } from "../workflow/iam-policy.ts";
import { pollOperation, type OperationEvent, type PollOptions } from "../workflow/poll-operation.ts";
import type { StepContext } from "../workflow/graph.ts";
import type { OptionalLane } from "./lanes.ts";
import { startExportOnce, type StartExportEvent } from "./start-export.ts";
import { exportOptions, exportStep, waitOptions, waitStep } from "./steps.ts";

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
 * The destination made ready (idempotent): the dataset created if missing (the export creates the
 * table but not the dataset, and the dataset is where access entries live), then the service
 * agent's dataEditor + jobUser checked, or granted with `grantIam`.
 */
export async function prepareBigQuery(
  admin: BigQueryAdmin,
  entry: BigQueryEntry,
  options: Pick<BigQueryLaneOptions, "serviceAgent" | "grantIam" | "grant" | "onEvent">,
): Promise<{ readonly datasetCreated: boolean; readonly granted: readonly string[] }> {
  const { project, dataset } = tableOf(entry.table);
  const emit = options.onEvent ?? (() => {});
  const created =
    (await admin.getDataset(project, dataset)) === undefined &&
    (await admin.createDataset(project, dataset, entry.location)).created;
  emit({ kind: "bigquery.dataset", dataset: `${project}:${dataset}`, created });
  const granted = await grantBigQueryAccess(
    admin,
    { project, dataset, serviceAgent: options.serviceAgent },
    options.grantIam,
    options.grant,
  );
  emit({ kind: "bigquery.iam", project, granted });
  return { datasetCreated: created, granted };
}

/** The table's row count after its export (idempotent). */
export async function tableRows(
  admin: BigQueryAdmin,
  tableUri: string,
  emit: EventSink<BigQueryLaneEvent> = () => {},
): Promise<number> {
  const { project, dataset, table } = tableOf(tableUri);
  const info = await admin.getTable(project, dataset, table);
  if (info === undefined) throw new Error(`${tableUri}: the export finished but the table does not exist`);
  const numRows = Number(info.numRows);
  emit({ kind: "bigquery.rows", table: tableUri, numRows });
  return numRows;
}

function tableOf(uri: string): { project: string; dataset: string; table: string } {
  const t = parseTableUri(uri);
  if (!t.ok) throw new UsageError(t.error);
  return t.value;
}

/**
 * A DICOM store's metadata into BigQuery in one call (`hcexport export STORE bq://P.D.T`): make the
 * destination ready, start the export at most once (adopting an operation an interrupted attempt
 * started), wait for it, and read the table's row count. In `run`, the same pieces are the steps of
 * a BigQuery lane (`bigqueryLane`).
 */
export async function exportToBigQuery(
  ports: BigQueryLanePorts,
  entry: BigQueryEntry,
  options: BigQueryLaneOptions,
): Promise<BigQueryLaneResult> {
  const { project } = tableOf(entry.table);
  const emit = options.onEvent ?? (() => {});
  const now = options.now ?? (() => new Date());
  const { datasetCreated: created, granted } = await prepareBigQuery(ports.bigquery, entry, options);
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
  const numRows = await tableRows(ports.bigquery, entry.table, emit);
  return { operation: name, numRows, datasetCreated: created, granted, done };
}

/** The result of a BigQuery lane's `rows:` step. */
export interface RowsResult {
  readonly table: string;
  readonly numRows: number;
}

/**
 * The BigQuery lane of one store (config `exports[i].bigquery`), named `PREFIX.bq`: make the
 * destination ready (`bigquery:`, idempotent, verified again whenever the export will start) →
 * start the export (`export:`, at-most-once, through the same one-at-a-time journaled gate as the
 * Cloud Storage exports, see exportStep) → wait for it (`wait:`, resumable) → count the table's
 * rows (`rows:`, idempotent). Independent of the bucket: it runs alongside the store lanes.
 */
export function bigqueryLane(entry: BigQueryEntry & { readonly lane: string }): OptionalLane {
  const lane = entry.lane;
  return {
    name: lane,
    add(wf, { spec, ports, hooks }) {
      const admin = (): BigQueryAdmin => {
        if (ports.bigquery === undefined) throw new Error(`${lane}: no BigQuery client was configured`);
        return ports.bigquery;
      };
      const { project, dataset } = tableOf(entry.table);
      const emit = hooks.emit;
      const disposition = entry.writeDisposition ?? "WRITE_EMPTY";
      const grant = spec.grantIam ? "grant if missing" : "exit 3 if missing";
      const ready = wf.step(
        `bigquery:${lane}`,
        {
          idempotency: "idempotent",
          lane,
          describe: `dataset ${project}:${dataset}; ${spec.serviceAgent} → ${BIGQUERY_ROLES.join(" + ")} (${grant})`,
          input: `${memberOf(spec.serviceAgent)} → ${entry.table}`,
          recheckWhen: [`export:${lane}`],
          summarize: (r: { datasetCreated: boolean; granted: readonly string[] }) =>
            [
              r.datasetCreated ? "created the dataset" : "dataset exists",
              r.granted.length > 0 ? `granted ${r.granted.join(" and ")}` : "roles present",
            ].join("; "),
        },
        () =>
          prepareBigQuery(admin(), entry, { serviceAgent: spec.serviceAgent, grantIam: spec.grantIam, onEvent: emit }),
      );
      const what = `${entry.store} → ${entry.table} (${disposition})`;
      const start = wf.step(
        `export:${lane}`,
        exportOptions(ports.healthcare, lane, [ready], what),
        (ctx: StepContext) =>
          exportStep(ctx, ports.healthcare, entry.store, entry.table, emit, { writeDisposition: disposition }),
      );
      const wait = wf.step(`wait:${lane}`, waitOptions(lane, start), (ctx: StepContext) =>
        waitStep(ctx, ports.healthcare, ctx.get(start).operation, hooks.poll, emit).catch((err: unknown) => {
          throw err instanceof OperationFailedError ? withBigQueryHint(err, entry.table, project) : err;
        }),
      );
      wf.step(
        `rows:${lane}`,
        {
          idempotency: "idempotent",
          lane,
          needs: [wait],
          describe: `count the rows of ${entry.table}`,
          input: entry.table,
          summarize: (r: RowsResult) => `${r.table} holds ${r.numRows} rows`,
        },
        async (): Promise<RowsResult> => ({ table: entry.table, numRows: await tableRows(admin(), entry.table, emit) }),
      );
    },
  };
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
