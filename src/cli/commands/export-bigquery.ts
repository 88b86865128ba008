import { UsageError } from "../../core/errors.ts";
import { parseStoreName, parseTableUri, serviceAgentFor } from "../../core/resource-names.ts";
import { bigqueryAdmin, bigqueryBase } from "../../gcp/bigquery.ts";
import { projectNumber } from "../../gcp/resource-manager.ts";
import { exportToBigQuery, type BigQueryEntry, type BigQueryLaneEvent } from "../../pipeline/bigquery-lane.ts";
import type { CliIo, GlobalArgs } from "../context.ts";
import type { AnyEvent, Formatter, Output, Rendered } from "../output.ts";
import type { Services } from "../services.ts";

export interface BigQueryExportArgs extends GlobalArgs {
  readonly store: string;
  readonly destination: string;
  readonly wait: boolean;
  readonly "write-disposition"?: string;
  readonly "grant-iam": boolean;
  readonly "service-agent"?: string;
  readonly "bigquery-endpoint"?: string;
  readonly location?: string;
}

const DISPOSITIONS = ["WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND"] as const;

/** Human lines for the BigQuery lane's own events. */
export const formatBigQueryEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  const e = event as BigQueryLaneEvent;
  switch (e.kind) {
    case "bigquery.dataset":
      return e.created
        ? { line: `✔ created BigQuery dataset ${e.dataset}` }
        : { line: `  dataset ${e.dataset} exists`, level: "debug" };
    case "bigquery.iam":
      return e.granted.length > 0
        ? { line: `✔ granted ${e.granted.join(" and ")} on project ${e.project}` }
        : { line: `  the service agent already holds its BigQuery roles on ${e.project}`, level: "debug" };
    default:
      return undefined;
  }
};

/** `hcexport export STORE bq://P.D.T`: dataset, roles, export, wait, row count. */
export async function runBigQueryExport(
  args: BigQueryExportArgs,
  io: CliIo,
  out: Output,
  services: Services,
): Promise<void> {
  const store = parseStoreName(args.store, "dicomStores");
  if (!store.ok) throw new UsageError(store.error);
  const table = parseTableUri(args.destination);
  if (!table.ok) throw new UsageError(table.error);
  const wd = args["write-disposition"]?.toUpperCase().replace(/-/g, "_");
  if (wd !== undefined && !(DISPOSITIONS as readonly string[]).includes(wd))
    throw new UsageError(
      `--write-disposition must be one of ${DISPOSITIONS.join(", ")}, not "${args["write-disposition"]}"`,
    );
  const agent = (
    args["service-agent"] ??
    serviceAgentFor(await projectNumber(services.client, services.endpoints.resourceManager, store.value.project))
  ).replace(/^serviceAccount:/, "");
  if (!/^service-\d+@gcp-sa-healthcare\.iam\.gserviceaccount\.com$/.test(agent))
    throw new UsageError(
      `"${agent}" is not a Healthcare service agent (service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com)`,
    );
  const override = args["bigquery-endpoint"];
  const admin =
    override === undefined
      ? services.bigquery
      : bigqueryAdmin(services.client, bigqueryBase(services.endpoints, override), services.endpoints.resourceManager);
  const entry: BigQueryEntry = {
    store: args.store,
    table: args.destination,
    ...(wd === undefined ? {} : { writeDisposition: wd as (typeof DISPOSITIONS)[number] }),
    ...(args.location === undefined ? {} : { location: args.location }),
  };
  const r = await exportToBigQuery({ healthcare: services.ports.healthcare, bigquery: admin }, entry, {
    serviceAgent: agent,
    grantIam: args["grant-iam"],
    wait: args.wait,
    onStarted: (name) => {
      if (args.wait) out.line(`started ${name}`);
    },
    onEvent: out.emit,
    signal: io.signal,
  });
  const json = {
    operation: r.operation,
    store: args.store,
    table: args.destination,
    datasetCreated: r.datasetCreated,
    granted: r.granted,
    ...(r.numRows === undefined ? {} : { done: true, numRows: r.numRows, counter: r.done?.metadata?.counter ?? {} }),
  };
  if (r.numRows === undefined) out.result(r.operation, json);
  else out.result(`${r.operation}: done, ${args.destination} holds ${r.numRows} rows`, json);
}
