import { randomUUID } from "node:crypto";
import { ApiError } from "../http-util.ts";
import { invalid, notFound, type BigQueryModel } from "./model.ts";

/** A finished query job: the only query the local cloud answers is a row count. */
export interface QueryJob {
  readonly projectId: string;
  readonly jobId: string;
  readonly location: string;
  readonly query: string;
  readonly useLegacySql: boolean;
  readonly count: number;
  readonly table: string;
  readonly creationTime: number;
  readonly etag: string;
}

/** The result schema of `SELECT COUNT(*)`: one unnamed INTEGER column. */
export const COUNT_SCHEMA = { fields: [{ name: "f0_", type: "INTEGER", mode: "NULLABLE" }] };

/**
 * Parses `SELECT COUNT(*) FROM t` where t is `` `p.d.t` ``, `p.d.t`, `d.t` (the job's project),
 * or legacy `[p:d.t]` / `p:d.t`. Anything else is undefined (the caller answers 501).
 */
export function parseCountQuery(
  sql: string,
  defaultProject: string,
): { projectId: string; datasetId: string; tableId: string } | undefined {
  const m =
    /^\s*select\s+count\s*\(\s*(?:\*|1)\s*\)\s+(?:as\s+\w+\s+)?from\s+(`[^`]+`|\[[^\]]+\]|[A-Za-z0-9_.:-]+)\s*;?\s*$/i.exec(
      sql,
    );
  if (m === null) return undefined;
  const ref = m[1]!.replace(/^[`[]|[`\]]$/g, "");
  const legacy = /^(?:([a-z0-9.:-]+?):)?([A-Za-z0-9_]+)\.([A-Za-z0-9_$-]+)$/.exec(ref);
  const standard = /^(?:([a-z0-9.:-]+)\.)?([A-Za-z0-9_]+)\.([A-Za-z0-9_$-]+)$/.exec(ref);
  const parts = ref.includes(":") ? legacy : standard;
  if (parts === null) return undefined;
  return { projectId: parts[1] ?? defaultProject, datasetId: parts[2]!, tableId: parts[3]! };
}

/** Runs a count query against the model (synchronously: the job is done at once). */
export function runCountQuery(
  model: BigQueryModel,
  projectId: string,
  query: unknown,
  options: { jobId?: unknown; location?: unknown; useLegacySql?: unknown },
): QueryJob {
  if (typeof query !== "string" || query.trim() === "") throw invalid("Required parameter is missing: query");
  const target = parseCountQuery(query, projectId);
  if (target === undefined)
    throw new ApiError(
      501,
      "notImplemented",
      `the hcexport local cloud answers only SELECT COUNT(*) FROM \`project.dataset.table\`, not: ${query.slice(0, 200)}`,
      { rpcStatus: "UNIMPLEMENTED" },
    );
  const d = model.dataset(target.projectId, target.datasetId);
  const t = d?.tables.get(target.tableId);
  if (d === undefined)
    throw notFound(`Not found: Dataset ${target.projectId}:${target.datasetId} was not found in location US`);
  if (t === undefined)
    throw notFound(
      `Not found: Table ${target.projectId}:${target.datasetId}.${target.tableId} was not found in location ${d.location}`,
    );
  const jobId =
    typeof options.jobId === "string" && options.jobId !== ""
      ? options.jobId
      : `job_${randomUUID().replace(/-/g, "_")}`;
  return {
    projectId,
    jobId,
    location: typeof options.location === "string" && options.location !== "" ? options.location : d.location,
    query,
    useLegacySql: options.useLegacySql === true,
    count: t.rows.length,
    table: `${target.projectId}:${target.datasetId}.${target.tableId}`,
    creationTime: model.now(),
    etag: model.etag(),
  };
}

export function jobReference(j: QueryJob): Record<string, string> {
  return { projectId: j.projectId, jobId: j.jobId, location: j.location };
}

/** The Job resource (`jobs.insert`/`jobs.get`); bq reads `statistics.query.statementType`. */
export function jobJson(j: QueryJob, root: string): Record<string, unknown> {
  const t = String(j.creationTime);
  return {
    kind: "bigquery#job",
    etag: j.etag,
    id: `${j.projectId}:${j.location}.${j.jobId}`,
    selfLink: `${root}/projects/${j.projectId}/jobs/${j.jobId}?location=${j.location}`,
    jobReference: jobReference(j),
    configuration: {
      query: { query: j.query, useLegacySql: j.useLegacySql, priority: "INTERACTIVE" },
      jobType: "QUERY",
    },
    status: { state: "DONE" },
    statistics: {
      creationTime: t,
      startTime: t,
      endTime: t,
      totalBytesProcessed: "0",
      query: {
        totalBytesProcessed: "0",
        totalBytesBilled: "0",
        cacheHit: false,
        statementType: "SELECT",
        totalSlotMs: "0",
      },
    },
  };
}

/** The rows part of `jobs.query` / `getQueryResults`. */
export function queryResults(j: QueryJob): Record<string, unknown> {
  return {
    schema: COUNT_SCHEMA,
    jobReference: jobReference(j),
    totalRows: "1",
    rows: [{ f: [{ v: String(j.count) }] }],
    totalBytesProcessed: "0",
    jobComplete: true,
    cacheHit: false,
  };
}
