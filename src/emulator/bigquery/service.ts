import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { ProjectRegistry } from "../projects.ts";
import type { EmulatorService } from "../types.ts";
import { discoveryDocument } from "./discovery.ts";
import { jobJson, queryResults, runCountQuery, type QueryJob } from "./jobs.ts";
import { defaultAccess, invalid, normalizeAccess, notFound, type BigQueryModel, type DatasetRecord } from "./model.ts";
import { datasetJson, datasetListItem, pageOffset, pageToken, tableJson, tableListItem } from "./resources-json.ts";
import { encodeRow, parseSchema, selectFields } from "./table-schema.ts";

const DATASET_ID = /^[A-Za-z0-9_]{1,1024}$/;
const TABLE_ID = /^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}$]{1,1024}$/u;

/**
 * The BigQuery v2 subset (DESIGN §5): datasets, tables, tabledata.list, row-count queries and the
 * discovery document bq fetches. Served under `/bigquery/v2/projects/…` (what clients with an
 * endpoint override call) and `/projects/…` (what `BIGQUERY_EMULATOR_HOST` makes the Node client call).
 */
export function createBigQueryService(model: BigQueryModel, projects: ProjectRegistry): EmulatorService {
  const jobs = new Map<string, QueryJob>();
  return {
    async handle(req, res, url, ctx) {
      const p = url.pathname;
      if (
        (p === "/$discovery/rest" || p === "/%24discovery/rest" || p === "/discovery/v1/apis/bigquery/v2/rest") &&
        req.method === "GET"
      ) {
        const doc = discoveryDocument(ctx.baseUrl);
        if (doc === undefined)
          throw notFound(
            "no BigQuery discovery document: install the Google Cloud SDK's bq, set HCEXPORT_BQ_DISCOVERY=FILE, or pass bq --discovery_file",
          );
        res.writeHead(200, {
          "content-type": "application/json; charset=UTF-8",
          "content-length": Buffer.byteLength(doc.text),
        });
        res.end(doc.text);
        return true;
      }
      const m = /^(?:\/bigquery\/v2)?\/projects(?:\/([^/]+)(\/.*)?)?$/.exec(p);
      if (m === null) return false;
      const root = `${ctx.baseUrl}/bigquery/v2`;
      if (m[1] === undefined) {
        if (req.method !== "GET") return false;
        // The projects bq can see: those holding datasets (the local cloud has no project list of its own).
        const all = model.projectIds().map((id) => projects.ensure(id));
        sendJson(res, 200, {
          kind: "bigquery#projectList",
          etag: model.etag(),
          projects: all.map((x) => ({
            kind: "bigquery#project",
            id: x.projectId,
            numericId: x.projectNumber,
            projectReference: { projectId: x.projectId },
            friendlyName: x.projectId,
          })),
          totalItems: all.length,
        });
        return true;
      }
      const project = decodeSegment(m[1]);
      const rest = (m[2] ?? "").split("/").slice(1).map(decodeSegment);
      const method = req.method ?? "GET";
      const body = method === "POST" || method === "PUT" || method === "PATCH" ? await readJson(req) : {};
      if (rest[0] === "datasets") {
        if (rest.length === 1) return datasetsCollection(model, project, method, body, url, res, root);
        const ds = rest[1]!;
        if (rest.length === 2) return datasetResource(model, project, ds, method, body, req, url, res, root);
        if (rest[2] !== "tables") return false;
        if (rest.length === 3) return tablesCollection(model, project, ds, method, body, url, res, root);
        const table = rest[3]!;
        if (rest.length === 4) return tableResource(model, project, ds, table, method, url, res, root);
        if (rest.length === 5 && rest[4] === "data" && method === "GET")
          return tableData(model, project, ds, table, url, res);
        return false;
      }
      if (rest[0] === "queries" && rest.length === 1 && method === "POST") {
        const job = runCountQuery(model, project, body["query"], {
          location: body["location"],
          useLegacySql: body["useLegacySql"] ?? false,
          ...(typeof body["requestId"] === "string"
            ? { jobId: `job_${body["requestId"].replace(/[^A-Za-z0-9_-]/g, "_")}` }
            : {}),
        });
        jobs.set(`${project}/${job.jobId}`, job);
        sendJson(res, 200, { kind: "bigquery#queryResponse", ...queryResults(job) });
        return true;
      }
      if (rest[0] === "queries" && rest.length === 2 && method === "GET") {
        const job = requireJob(jobs, project, rest[1]!);
        sendJson(res, 200, { kind: "bigquery#getQueryResultsResponse", etag: job.etag, ...queryResults(job) });
        return true;
      }
      if (rest[0] === "jobs" && rest.length === 1 && method === "POST") {
        const config = (body["configuration"] ?? {}) as Record<string, unknown>;
        const q = config["query"] as Record<string, unknown> | undefined;
        if (q === undefined)
          throw new ApiError(
            501,
            "notImplemented",
            "the hcexport local cloud runs only query jobs (SELECT COUNT(*) FROM a table)",
            {
              rpcStatus: "UNIMPLEMENTED",
            },
          );
        const ref = (body["jobReference"] ?? {}) as Record<string, unknown>;
        if (typeof ref["jobId"] === "string" && jobs.has(`${project}/${ref["jobId"]}`))
          throw new ApiError(409, "duplicate", `Already Exists: Job ${project}:US.${ref["jobId"]}`, {
            rpcStatus: "ALREADY_EXISTS",
          });
        const job = runCountQuery(model, project, q["query"], {
          jobId: ref["jobId"],
          location: ref["location"],
          useLegacySql: q["useLegacySql"] ?? true,
        });
        jobs.set(`${project}/${job.jobId}`, job);
        sendJson(res, 200, jobJson(job, root));
        return true;
      }
      if (rest[0] === "jobs" && rest.length === 2 && method === "GET") {
        sendJson(res, 200, jobJson(requireJob(jobs, project, rest[1]!), root));
        return true;
      }
      return false;
    },
  };
}

function requireJob(jobs: Map<string, QueryJob>, project: string, id: string): QueryJob {
  const job = jobs.get(`${project}/${id}`);
  if (job === undefined) throw notFound(`Not found: Job ${project}:${id}`);
  return job;
}

/** `maxResults` and `pageToken` of a list call → the slice bounds. */
function page(url: URL, total: number, dflt: number): { start: number; end: number } {
  const token = url.searchParams.get("pageToken");
  const start = token === null || token === "" ? 0 : pageOffset(token);
  if (start === undefined) throw invalid(`Invalid page token: ${token}`);
  const max = Number(url.searchParams.get("maxResults") ?? dflt);
  if (!Number.isInteger(max) || max < 0)
    throw invalid(`Invalid value for maxResults: ${url.searchParams.get("maxResults")}`);
  return { start, end: Math.min(total, start + (max === 0 ? dflt : max)) };
}

function datasetsCollection(
  model: BigQueryModel,
  project: string,
  method: string,
  body: Record<string, unknown>,
  url: URL,
  res: ServerResponse,
  root: string,
): boolean {
  if (method === "GET") {
    const all = model.datasets(project);
    const { start, end } = page(url, all.length, 1000);
    sendJson(res, 200, {
      kind: "bigquery#datasetList",
      etag: model.etag(),
      ...(end > start ? { datasets: all.slice(start, end).map(datasetListItem) } : {}),
      ...(end < all.length ? { nextPageToken: pageToken(end) } : {}),
    });
    return true;
  }
  if (method !== "POST") return false;
  const ref = (body["datasetReference"] ?? {}) as { projectId?: unknown; datasetId?: unknown };
  const id = ref.datasetId;
  if (typeof id !== "string" || id === "") throw invalid("Required parameter is missing: datasetReference.datasetId");
  if (!DATASET_ID.test(id))
    throw invalid(
      `Invalid dataset ID "${id}". Dataset IDs must be alphanumeric (plus underscores) and must be at most 1024 characters long.`,
    );
  if (ref.projectId !== undefined && ref.projectId !== project)
    throw invalid(
      `datasetReference.projectId "${String(ref.projectId)}" does not match the project of the request "${project}"`,
    );
  const d = model.createDataset({
    projectId: project,
    datasetId: id,
    location: typeof body["location"] === "string" ? body["location"] : "US",
    access: body["access"] === undefined ? defaultAccess() : normalizeAccess(body["access"]),
    ...mutable(body),
  });
  if (d === undefined)
    throw new ApiError(409, "duplicate", `Already Exists: Dataset ${project}:${id}`, { rpcStatus: "ALREADY_EXISTS" });
  sendJson(res, 200, datasetJson(d, root));
  return true;
}

/** The user-settable fields of a dataset in a request body. */
function mutable(
  body: Record<string, unknown>,
): Partial<Pick<DatasetRecord, "labels" | "description" | "friendlyName" | "defaultTableExpirationMs">> {
  const out: Partial<Pick<DatasetRecord, "labels" | "description" | "friendlyName" | "defaultTableExpirationMs">> = {};
  if (typeof body["description"] === "string") out.description = body["description"];
  if (typeof body["friendlyName"] === "string") out.friendlyName = body["friendlyName"];
  if (body["defaultTableExpirationMs"] !== undefined && body["defaultTableExpirationMs"] !== null)
    out.defaultTableExpirationMs = String(body["defaultTableExpirationMs"]);
  if (typeof body["labels"] === "object" && body["labels"] !== null)
    out.labels = body["labels"] as Record<string, string>;
  return out;
}

function datasetResource(
  model: BigQueryModel,
  project: string,
  id: string,
  method: string,
  body: Record<string, unknown>,
  req: IncomingMessage,
  url: URL,
  res: ServerResponse,
  root: string,
): boolean {
  if (method === "GET") {
    sendJson(res, 200, datasetJson(model.requireDataset(project, id), root));
    return true;
  }
  if (method === "DELETE") {
    model.deleteDataset(project, id, url.searchParams.get("deleteContents") === "true");
    res.writeHead(204).end();
    return true;
  }
  if (method !== "PATCH" && method !== "PUT") return false;
  const d = model.requireDataset(project, id);
  const ifMatch = req.headers["if-match"];
  if (ifMatch !== undefined && ifMatch !== "*" && ifMatch !== d.etag)
    throw new ApiError(412, "conditionNotMet", "Precondition check failed.", { rpcStatus: "FAILED_PRECONDITION" });
  if (body["location"] !== undefined && body["location"] !== d.location)
    throw invalid(`Cannot change dataset location from ${d.location} to ${String(body["location"])}`);
  if (method === "PUT") {
    delete d.description;
    delete d.friendlyName;
    delete d.labels;
    delete d.defaultTableExpirationMs;
  }
  Object.assign(d, mutable(body));
  if (method === "PATCH" && body["labels"] !== undefined && d.labels !== undefined) {
    // PATCH labels: a null value removes that label.
    d.labels = Object.fromEntries(Object.entries(d.labels).filter(([, v]) => v !== null));
  }
  if (body["access"] !== undefined) d.access = normalizeAccess(body["access"]);
  model.touchDataset(d);
  sendJson(res, 200, datasetJson(d, root));
  return true;
}

function tablesCollection(
  model: BigQueryModel,
  project: string,
  ds: string,
  method: string,
  body: Record<string, unknown>,
  url: URL,
  res: ServerResponse,
  root: string,
): boolean {
  const d = model.requireDataset(project, ds);
  if (method === "GET") {
    const all = [...d.tables.values()].sort((a, b) => (a.tableId < b.tableId ? -1 : a.tableId > b.tableId ? 1 : 0));
    const { start, end } = page(url, all.length, 1000);
    sendJson(res, 200, {
      kind: "bigquery#tableList",
      etag: model.etag(),
      ...(end > start ? { tables: all.slice(start, end).map((t) => tableListItem(d, t)) } : {}),
      totalItems: all.length,
      ...(end < all.length ? { nextPageToken: pageToken(end) } : {}),
    });
    return true;
  }
  if (method !== "POST") return false;
  const ref = (body["tableReference"] ?? {}) as { tableId?: unknown };
  if (typeof ref.tableId !== "string" || !TABLE_ID.test(ref.tableId))
    throw invalid(`Invalid table ID "${String(ref.tableId)}".`);
  if (d.tables.has(ref.tableId))
    throw new ApiError(409, "duplicate", `Already Exists: Table ${project}:${ds}.${ref.tableId}`, {
      rpcStatus: "ALREADY_EXISTS",
    });
  const fields = parseSchema(((body["schema"] ?? { fields: [] }) as { fields?: unknown }).fields ?? []);
  if (typeof fields === "string") throw invalid(fields);
  const t = model.writeTable(d, ref.tableId, fields, [], false);
  if (typeof body["description"] === "string") t.description = body["description"];
  sendJson(res, 200, tableJson(d, t, root));
  return true;
}

function tableResource(
  model: BigQueryModel,
  project: string,
  ds: string,
  table: string,
  method: string,
  url: URL,
  res: ServerResponse,
  root: string,
): boolean {
  const t = model.requireTable(project, ds, table);
  const d = model.requireDataset(project, ds);
  if (method === "GET") {
    const json = tableJson(d, t, root);
    // selectedFields narrows the schema like tabledata.list's rows (bq head --selected_fields reads both).
    json["schema"] = { fields: selectFields(t.schema, url.searchParams.get("selectedFields")) };
    sendJson(res, 200, json);
    return true;
  }
  if (method === "DELETE") {
    d.tables.delete(table);
    res.writeHead(204).end();
    return true;
  }
  return false;
}

/** `tabledata.list`: rows in the `{"f":[{"v":…}]}` encoding, paged by `pageToken` or `startIndex`. */
function tableData(
  model: BigQueryModel,
  project: string,
  ds: string,
  table: string,
  url: URL,
  res: ServerResponse,
): boolean {
  const t = model.requireTable(project, ds, table);
  const q = url.searchParams;
  let start: number;
  const token = q.get("pageToken");
  if (token !== null && token !== "") {
    const at = pageOffset(token);
    if (at === undefined) throw invalid(`Invalid page token: ${token}`);
    start = at;
  } else {
    const si = q.get("startIndex") ?? "0";
    if (!/^\d+$/.test(si)) throw invalid(`Invalid value for startIndex: ${si}`);
    start = Number(si);
  }
  const max = Number(q.get("maxResults") ?? 100_000);
  if (!Number.isInteger(max) || max < 0) throw invalid(`Invalid value for maxResults: ${q.get("maxResults")}`);
  const end = Math.min(t.rows.length, start + (max === 0 ? 100_000 : max));
  const fields = selectFields(t.schema, q.get("selectedFields"));
  const options = {
    int64Timestamp: q.get("formatOptions.useInt64Timestamp") === "true",
    isoTimestamp: q.get("formatOptions.timestampOutputFormat") === "ISO8601_STRING",
  };
  const rows = t.rows.slice(start, end).map((r) => encodeRow(fields, r, options));
  sendJson(res, 200, {
    kind: "bigquery#tableDataList",
    etag: t.etag,
    totalRows: String(t.rows.length),
    ...(end < t.rows.length ? { pageToken: pageToken(end) } : {}),
    ...(rows.length > 0 ? { rows } : {}),
  });
  return true;
}
