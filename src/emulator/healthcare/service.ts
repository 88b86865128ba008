import type { IncomingMessage, ServerResponse } from "node:http";
import { parseGsUri } from "../../core/resource-names.ts";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { ProjectRegistry } from "../projects.ts";
import type { EmulatorService, FaultConfig, ObjectStore, RequestContext } from "../types.ts";
import { parseExportMimeType } from "./export-formats.ts";
import type { BigQueryExports } from "../bigquery/healthcare-exports.ts";
import { runExport } from "./export-job.ts";
import {
  operationJson,
  studyInstances,
  type DicomStoreRecord,
  type HealthcareModel,
  type OperationRecord,
} from "./model.ts";
import { instanceAttributes, isFilteredQuery, qidoSearch, type QidoLevel } from "./qido.ts";
import { framesOrRendered } from "./frames.ts";
import { imageAttributes } from "./pixels.ts";
import { retrieve } from "./wado.ts";

export interface HealthcareServiceOptions {
  readonly model: HealthcareModel;
  readonly objects: ObjectStore;
  readonly projects: ProjectRegistry;
  /** Instances an export writes per second. */
  readonly exportInstancesPerSecond: number;
  readonly now?: () => Date;
  /** The emulator's current faults (read per instance, so a change applies mid-export); default: the request's. */
  readonly faults?: () => FaultConfig;
  /** Exports with a `bigqueryDestination` (the local cloud's BigQuery); without it they are 501. */
  readonly bigquery?: BigQueryExports;
}

const DATASET = /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+)/;

/** The Healthcare API subset under `/v1/` and `/v1beta1/` (DESIGN §5). */
export function createHealthcareService(options: HealthcareServiceOptions): EmulatorService {
  const now = options.now ?? (() => new Date());
  return {
    async handle(req, res, url, ctx) {
      const m = /^\/(v1|v1beta1)\/(projects\/.+)$/.exec(url.pathname);
      if (m === null) return false;
      const version = m[1] as "v1" | "v1beta1";
      const path = m[2]!.split("/").map(decodeSegment).join("/");
      if (!DATASET.test(path)) return false;
      if (req.method === "POST" && path.endsWith(":testIamPermissions"))
        return testIamPermissions(options, path.slice(0, -":testIamPermissions".length), req, res);
      if (req.method === "POST" && path.endsWith(":export"))
        return startExport(options, version, path.slice(0, -":export".length), req, res, ctx, now);
      const op = /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+)\/operations(?:\/([^/:]+))?(:cancel)?$/.exec(
        path,
      );
      if (op !== null) return operations(options, op[1]!, op[2], op[3] !== undefined, req, res, url);
      const web = /^(.+\/dicomStores\/[^/]+)\/dicomWeb\/(.+)$/.exec(path);
      if (web !== null && (req.method === "GET" || req.method === "HEAD"))
        return dicomWeb(options, web[1]!, web[2]!, req, res, url, ctx);
      const fhir = /^(.+\/fhirStores\/[^/]+)\/fhir\/([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec(path);
      if (fhir !== null && req.method === "GET") return fhirRead(options, fhir[1]!, fhir[2]!, fhir[3]!, res);
      return false;
    },
  };
}

async function startExport(
  o: HealthcareServiceOptions,
  version: "v1" | "v1beta1",
  storeName: string,
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  now: () => Date,
): Promise<boolean> {
  const body = await readJson(req);
  const allowed =
    version === "v1"
      ? ["gcsDestination", "bigqueryDestination"]
      : ["gcsDestination", "bigqueryDestination", "filterConfig"];
  rejectUnknown(body, allowed, "");
  const store = o.model.dicomStores.get(storeName);
  if (store === undefined)
    throw new ApiError(404, "notFound", `DICOM store "${storeName}" not found`, { rpcStatus: "NOT_FOUND" });
  if (body["bigqueryDestination"] !== undefined && o.bigquery !== undefined && body["filterConfig"] === undefined) {
    if (body["gcsDestination"] !== undefined)
      throw invalidArgument("set only one of gcsDestination and bigqueryDestination");
    const faults = () => (o.faults ?? (() => ctx.faults))();
    const op = o.bigquery.start(o, version, store, body["bigqueryDestination"], ctx.random, faults, now);
    sendJson(res, 200, { name: op.name });
    return true;
  }
  if (body["bigqueryDestination"] !== undefined) {
    throw new ApiError(501, "notImplemented", "the hcexport emulator implements only gcsDestination exports");
  }
  const filter = filterUriOf(body["filterConfig"]);
  const gcs = body["gcsDestination"];
  if (typeof gcs !== "object" || gcs === null) throw invalidArgument("gcsDestination is required");
  rejectUnknown(gcs as Record<string, unknown>, ["uriPrefix", "mimeType"], "gcsDestination.");
  const { uriPrefix, mimeType } = gcs as { uriPrefix?: unknown; mimeType?: unknown };
  if (typeof uriPrefix !== "string") throw invalidArgument("gcsDestination.uriPrefix is required");
  const dest = parseGsUri(uriPrefix);
  if (!dest.ok) throw invalidArgument(`invalid gcsDestination.uriPrefix: ${dest.error}`);
  parseExportMimeType(mimeType);
  const dataset = DATASET.exec(storeName)![1]!;
  const op = o.model.newOperation(
    {
      dataset,
      apiVersion: version,
      method: "dicom.DicomService.ExportDicomData",
      counter: { success: 0, failure: 0, pending: store.instances.length },
      source: storeName,
      destination: uriPrefix,
      ...(typeof mimeType === "string" && mimeType !== "" ? { mimeType } : {}),
      ...(filter === undefined ? {} : { filter }),
    },
    now(),
  );
  startExportJob(o, op, store, ctx.random, () => (o.faults ?? (() => ctx.faults))(), now);
  sendJson(res, 200, { name: op.name });
  return true;
}

/** `filterConfig` of a v1beta1 export (DicomFilterConfig): `{resourcePathsGcsUri: "gs://B/OBJECT"}`; 400 otherwise. */
function filterUriOf(config: unknown): string | undefined {
  if (config === undefined) return undefined;
  if (typeof config !== "object" || config === null || Array.isArray(config))
    throw invalidArgument("filterConfig must be an object");
  rejectUnknown(config as Record<string, unknown>, ["resourcePathsGcsUri"], "filterConfig.");
  const uri = (config as { resourcePathsGcsUri?: unknown }).resourcePathsGcsUri;
  if (typeof uri !== "string") throw invalidArgument("filterConfig.resourcePathsGcsUri is required");
  const parsed = parseGsUri(uri);
  if (!parsed.ok || parsed.value.prefix === "")
    throw invalidArgument(`filterConfig.resourcePathsGcsUri must be gs://bucket/path/to/object, not ${uri}`);
  return uri;
}

const IAM_RESOURCE = /^projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+(?:\/(?:dicomStores|fhirStores)\/[^/]+)?$/;
const HEALTHCARE_PERMISSION = /^healthcare\.[A-Za-z]+\.[A-Za-z]+$/;

/**
 * `POST {dataset|dicomStore|fhirStore}:testIamPermissions` with `{"permissions":[…]}` →
 * `{"permissions":[…held…]}` (`{}` when none). The anonymous local cloud holds every Healthcare
 * permission, so it answers the valid `healthcare.*` permissions asked. Like the real API, a
 * resource that does not exist yields an empty set rather than NOT_FOUND, and wildcards are 400.
 */
async function testIamPermissions(
  o: HealthcareServiceOptions,
  resource: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<boolean> {
  if (!IAM_RESOURCE.test(resource)) return false;
  const body = await readJson(req);
  rejectUnknown(body, ["permissions"], "");
  const asked = body["permissions"] ?? [];
  if (!Array.isArray(asked) || asked.some((p) => typeof p !== "string"))
    throw invalidArgument("permissions must be a list of strings");
  const wildcard = (asked as string[]).find((p) => p.includes("*"));
  if (wildcard !== undefined)
    throw invalidArgument(`Permissions with wildcards (such as * or storage.*) are not allowed: "${wildcard}"`);
  const exists = resource.includes("/dicomStores/")
    ? o.model.dicomStores.has(resource)
    : resource.includes("/fhirStores/")
      ? o.model.fhirStores.has(resource)
      : o.model.datasets.has(resource);
  const granted = exists ? [...new Set((asked as string[]).filter((p) => HEALTHCARE_PERMISSION.test(p)))] : [];
  sendJson(res, 200, granted.length === 0 ? {} : { permissions: granted });
  return true;
}

function startExportJob(
  o: HealthcareServiceOptions,
  op: OperationRecord,
  store: DicomStoreRecord,
  random: () => number,
  faults: () => FaultConfig,
  now: () => Date,
): void {
  const dest = parseGsUri(op.destination);
  if (!dest.ok) throw invalidArgument(`invalid gcsDestination.uriPrefix: ${dest.error}`);
  const project = store.name.split("/")[1]!;
  o.model.track(
    runExport({
      op,
      store,
      bucket: dest.value.bucket,
      prefix: dest.value.prefix,
      serviceAgent: `service-${o.projects.ensure(project).projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`,
      objects: o.objects,
      format: parseExportMimeType(op.mimeType),
      ...(op.filter === undefined ? {} : { filter: op.filter }),
      rate: o.exportInstancesPerSecond,
      failureRate: () => faults().exportFailureRate,
      random,
      now,
      onChange: (final) => o.model.changed(final),
      signal: o.model.shutdown.signal,
    }),
  );
}

/**
 * Restarts the exports a previous emulator process left unfinished (operations kept with
 * `--data`): each starts over, which is harmless because an export overwrites what it wrote.
 */
export function resumeExports(o: HealthcareServiceOptions, random: () => number, faults: () => FaultConfig): number {
  const now = o.now ?? (() => new Date());
  let resumed = 0;
  for (const op of o.model.operations()) {
    if (op.done || op.method !== "dicom.DicomService.ExportDicomData") continue;
    const store = o.model.dicomStores.get(op.source);
    if (store === undefined || op.cancelRequested) {
      Object.assign(op, {
        done: true,
        endTime: now().toISOString(),
        error: op.cancelRequested
          ? { code: 1, message: "Operation was cancelled." }
          : { code: 10, message: `The emulator restarted without DICOM store ${op.source}; the export was aborted.` },
      });
      o.model.changed(true);
      continue;
    }
    if (op.destination.startsWith("bq://") && o.bigquery !== undefined)
      o.bigquery.resume(o, op, store, random, faults, now);
    else startExportJob(o, op, store, random, faults, now);
    resumed++;
  }
  return resumed;
}

function operations(
  o: HealthcareServiceOptions,
  dataset: string,
  id: string | undefined,
  cancel: boolean,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): boolean {
  if (id === undefined) {
    if (req.method !== "GET") return false;
    const all = o.model.operations(dataset);
    const pageSize = Math.min(100, Number(url.searchParams.get("pageSize") ?? "100") || 100);
    const token = url.searchParams.get("pageToken") ?? "";
    if (token !== "" && !/^\d+$/.test(token))
      throw invalidArgument(`invalid pageToken "${token}": pass the nextPageToken of the previous page`);
    const start = Number(token || "0");
    const page = all.slice(start, start + pageSize);
    sendJson(res, 200, {
      operations: page.map(operationJson),
      ...(start + pageSize < all.length ? { nextPageToken: String(start + pageSize) } : {}),
    });
    return true;
  }
  const op = o.model.operation(`${dataset}/operations/${id}`);
  if (op === undefined)
    throw new ApiError(404, "notFound", `operation ${dataset}/operations/${id} not found`, { rpcStatus: "NOT_FOUND" });
  if (cancel) {
    if (req.method !== "POST") return false;
    if (!op.done) {
      op.cancelRequested = true;
      o.model.changed(true);
    }
    sendJson(res, 200, {});
    return true;
  }
  if (req.method !== "GET") return false;
  sendJson(res, 200, operationJson(op));
  return true;
}

async function dicomWeb(
  o: HealthcareServiceOptions,
  storeName: string,
  rest: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RequestContext,
): Promise<boolean> {
  const store = o.model.dicomStores.get(storeName);
  if (store === undefined)
    throw new ApiError(404, "notFound", `DICOM store "${storeName}" not found`, { rpcStatus: "NOT_FOUND" });
  const parts = rest.split("/");
  // [studies/S/][series/SE/][instances/I/][metadata] or a search level as the last segment.
  const scope: { study?: string; series?: string; instance?: string } = {};
  let i = 0;
  for (const [level, key] of [
    ["studies", "study"],
    ["series", "series"],
    ["instances", "instance"],
  ] as const) {
    if (parts[i] === level && parts.length > i + 1 && parts[i + 1] !== "") {
      scope[key] = parts[i + 1]!;
      i += 2;
    }
  }
  const selected = () =>
    (scope.instance !== undefined
      ? [store.bySop.get(scope.instance)].filter((x) => x !== undefined)
      : scope.study !== undefined
        ? studyInstances(store, scope.study)
        : store.instances
    ).filter(
      (x) =>
        (scope.study === undefined || x.studyUid === scope.study) &&
        (scope.series === undefined || x.seriesUid === scope.series),
    );
  if (scope.instance !== undefined && scope.study !== undefined && (parts[i] === "frames" || parts[i] === "rendered")) {
    const [inst] = selected();
    if (inst === undefined) throw new ApiError(404, "notFound", "no such DICOM resource", { rpcStatus: "NOT_FOUND" });
    if (framesOrRendered(req, res, inst, parts.slice(i))) return true;
  }
  if (i === parts.length && scope.study !== undefined) {
    await retrieve(req, res, selected(), scope.instance !== undefined, ctx);
    return true;
  }
  if (i === parts.length - 1 && parts[i] === "metadata" && scope.study !== undefined) {
    const match = selected();
    if (match.length === 0) throw new ApiError(404, "notFound", "no such DICOM resource", { rpcStatus: "NOT_FOUND" });
    sendDicomJson(
      res,
      match.map((x) => sortedTags({ ...instanceAttributes(x), ...imageAttributes(x.data()) })),
    );
    return true;
  }
  const level = parts[i];
  if (
    scope.instance !== undefined ||
    i !== parts.length - 1 ||
    (level !== "studies" && level !== "series" && level !== "instances")
  )
    return false;
  if (level === "studies" && scope.study !== undefined) return false;
  if (level === "series" && scope.series !== undefined) return false;
  const inScope = scope.study === undefined ? store.instances : studyInstances(store, scope.study);
  const rows = qidoSearch(inScope, level as QidoLevel, scope, url.searchParams);
  if (rows.length === 0 && isFilteredQuery(url.searchParams, scope)) {
    res.writeHead(204).end();
    return true;
  }
  sendDicomJson(res, rows);
  return true;
}

function sortedTags<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

function sendDicomJson(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, {
    "content-type": "application/dicom+json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

function fhirRead(
  o: HealthcareServiceOptions,
  storeName: string,
  type: string,
  id: string,
  res: ServerResponse,
): boolean {
  const store = o.model.fhirStores.get(storeName);
  const resource = store?.resources.get(`${type}/${id}`);
  if (resource === undefined) {
    const text = JSON.stringify({
      resourceType: "OperationOutcome",
      issue: [
        {
          severity: "error",
          code: "not-found",
          diagnostics: store === undefined ? `FHIR store ${storeName} not found` : `resource not found: ${type}/${id}`,
        },
      ],
    });
    res.writeHead(404, {
      "content-type": "application/fhir+json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
    return true;
  }
  const text = JSON.stringify(resource);
  res.writeHead(200, {
    "content-type": "application/fhir+json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
  return true;
}

function rejectUnknown(body: Record<string, unknown>, allowed: string[], path: string): void {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      const msg = `Invalid JSON payload received. Unknown name "${key}"${path === "" ? "" : ` at '${path.slice(0, -1)}'`}: Cannot find field.`;
      throw new ApiError(400, "invalid", msg, {
        rpcStatus: "INVALID_ARGUMENT",
        details: [
          {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            fieldViolations: [{ field: `${path}${key}`, description: msg }],
          },
        ],
      });
    }
  }
}

function invalidArgument(message: string): ApiError {
  return new ApiError(400, "invalid", message, { rpcStatus: "INVALID_ARGUMENT" });
}
