import type { IncomingMessage, ServerResponse } from "node:http";
import { setTimeout as delay } from "node:timers/promises";
import { decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { EmulatorService } from "../types.ts";
import { operationJson, type HealthcareModel } from "./model.ts";
import { alreadyExists, invalidArgument, notFound, pageOf, RESOURCE_ID } from "./rpc.ts";
import { applyMask, createFields, type ResourceKind } from "./resource-fields.ts";

type Version = "v1" | "v1beta1";

/** Where the Healthcare API runs (its documented regions and multi-regions). */
export const LOCATIONS = [
  "asia-east2",
  "asia-northeast1",
  "asia-northeast3",
  "asia-south1",
  "asia-southeast1",
  "australia-southeast1",
  "europe-west1",
  "europe-west2",
  "europe-west3",
  "europe-west4",
  "europe-west6",
  "northamerica-northeast1",
  "southamerica-east1",
  "us-central1",
  "us-east1",
  "us-east4",
  "us-west1",
  "us-west2",
  "us",
  "eu",
] as const;

const DISPLAY: Record<string, string> = { us: "United States", eu: "Europe" };

/**
 * The resource surface of the Healthcare API under `/v1/` and `/v1beta1/`: locations (list, get),
 * datasets (create as a long-running operation, get, list, patch, delete), DICOM and FHIR stores
 * (create, get, list, patch with `updateMask`, delete) and `getIamPolicy`/`setIamPolicy` on
 * datasets and stores. Everything else falls through to the data-plane routes.
 */
export function createHealthcareResourcesService(model: HealthcareModel, now = () => new Date()): EmulatorService {
  return {
    async handle(req, res, url) {
      const m = /^\/(v1|v1beta1)\/(projects\/.+)$/.exec(url.pathname);
      if (m === null) return false;
      const version = m[1] as Version;
      const path = m[2]!.split("/").map(decodeSegment).join("/");
      const method = req.method ?? "GET";
      const iam = /^(.+):(getIamPolicy|setIamPolicy)$/.exec(path);
      if (iam !== null) return iamRoute(model, iam[1]!, iam[2]!, method, req, res, url);
      const loc = /^projects\/([^/]+)\/locations(?:\/([^/]+))?$/.exec(path);
      if (loc !== null && method === "GET") return locations(loc[1]!, loc[2], res, url);
      const ds = /^(projects\/[^/]+\/locations\/([^/]+))\/datasets(?:\/([^/:]+))?$/.exec(path);
      if (ds !== null) return datasets(model, version, ds[1]!, ds[2]!, ds[3], method, req, res, url, now);
      const st = /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+)\/(dicomStores|fhirStores)(?:\/([^/:]+))?$/.exec(
        path,
      );
      if (st !== null) {
        const kind = st[2] === "dicomStores" ? "dicomStore" : "fhirStore";
        return stores(model, version, kind, st[1]!, st[3], method, req, res, url);
      }
      return false;
    },
  };
}

function locations(project: string, id: string | undefined, res: ServerResponse, url: URL): boolean {
  const json = (l: string) => ({
    name: `projects/${project}/locations/${l}`,
    locationId: l,
    displayName: DISPLAY[l] ?? l,
  });
  if (id !== undefined) {
    if (!(LOCATIONS as readonly string[]).includes(id))
      throw notFound(`Location projects/${project}/locations/${id} not found`);
    sendJson(res, 200, json(id));
    return true;
  }
  const { page, nextPageToken } = pageOf([...LOCATIONS].sort(), url.searchParams, (l) => l);
  sendJson(res, 200, { locations: page.map(json), ...(nextPageToken === undefined ? {} : { nextPageToken }) });
  return true;
}

function checkLocation(location: string): void {
  if (!(LOCATIONS as readonly string[]).includes(location))
    throw invalidArgument(`Location "${location}" is not supported by the Cloud Healthcare API`);
}

async function datasets(
  model: HealthcareModel,
  version: Version,
  parent: string,
  location: string,
  id: string | undefined,
  method: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  now: () => Date,
): Promise<boolean> {
  const json = (name: string) => ({ name, ...model.datasets.get(name)!.config });
  if (id === undefined) {
    if (method === "GET") {
      const all = [...model.datasets.keys()].filter((n) => n.startsWith(`${parent}/datasets/`)).sort();
      const { page, nextPageToken } = pageOf(all, url.searchParams, (n) => n);
      sendJson(res, 200, { datasets: page.map(json), ...(nextPageToken === undefined ? {} : { nextPageToken }) });
      return true;
    }
    if (method !== "POST") return false;
    checkLocation(location);
    const datasetId = url.searchParams.get("datasetId") ?? "";
    if (!RESOURCE_ID.test(datasetId))
      throw invalidArgument(`invalid datasetId "${datasetId}": 1-256 letters, digits, '_', '-' or '.'`);
    const config = createFields("dataset", version, await readJson(req));
    const name = `${parent}/datasets/${datasetId}`;
    if (model.datasets.has(name)) throw alreadyExists(`Dataset "${name}" already exists`);
    model.datasets.set(name, { name, config });
    model.resourcesChanged();
    // CreateDataset is a long-running operation: it answers an Operation that ends moments later.
    const op = model.newOperation(
      {
        dataset: name,
        apiVersion: version,
        method: "dataset.DatasetService.CreateDataset",
        counter: { success: 0, failure: 0, pending: 0 },
        source: name,
        destination: "",
      },
      now(),
    );
    op.response = { "@type": `type.googleapis.com/google.cloud.healthcare.${version}.dataset.Dataset`, ...json(name) };
    model.track(
      delay(50).then(() => {
        op.done = true;
        op.endTime = now().toISOString();
        model.changed(true);
      }),
    );
    sendJson(res, 200, operationJson(op));
    return true;
  }
  const name = `${parent}/datasets/${id}`;
  const rec = model.datasets.get(name);
  if (rec === undefined) throw notFound(`Dataset "${name}" not found`);
  if (method === "GET") {
    sendJson(res, 200, json(name));
    return true;
  }
  if (method === "PATCH") {
    rec.config = applyMask("dataset", version, rec.config, await readJson(req), url.searchParams.get("updateMask"));
    model.resourcesChanged();
    sendJson(res, 200, json(name));
    return true;
  }
  if (method === "DELETE") {
    for (const map of [model.dicomStores, model.fhirStores])
      for (const store of [...map.keys()]) if (store.startsWith(`${name}/`)) map.delete(store);
    model.datasets.delete(name);
    model.iam.delete(name);
    model.resourcesChanged();
    sendJson(res, 200, {});
    return true;
  }
  return false;
}

async function stores(
  model: HealthcareModel,
  version: Version,
  kind: ResourceKind,
  dataset: string,
  id: string | undefined,
  method: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  const map = kind === "dicomStore" ? model.dicomStores : model.fhirStores;
  const collection = kind === "dicomStore" ? "dicomStores" : "fhirStores";
  const label = kind === "dicomStore" ? "DICOM store" : "FHIR store";
  const json = (name: string) => ({ name, ...map.get(name)!.config });
  if (!model.datasets.has(dataset)) throw notFound(`Dataset "${dataset}" not found`);
  if (id === undefined) {
    if (method === "GET") {
      const all = [...map.keys()]
        .filter((n) => n.startsWith(`${dataset}/${collection}/`))
        .filter(labelFilter(url.searchParams.get("filter"), (n) => map.get(n)!.config))
        .sort();
      const { page, nextPageToken } = pageOf(all, url.searchParams, (n) => n);
      sendJson(res, 200, { [collection]: page.map(json), ...(nextPageToken === undefined ? {} : { nextPageToken }) });
      return true;
    }
    if (method !== "POST") return false;
    const param = kind === "dicomStore" ? "dicomStoreId" : "fhirStoreId";
    const storeId = url.searchParams.get(param) ?? "";
    if (!RESOURCE_ID.test(storeId))
      throw invalidArgument(`invalid ${param} "${storeId}": 1-256 letters, digits, '_', '-' or '.'`);
    const config = createFields(kind, version, await readJson(req));
    const name = `${dataset}/${collection}/${storeId}`;
    if (map.has(name)) throw alreadyExists(`${label} "${name}" already exists`);
    if (kind === "dicomStore") model.addDicomStore(name, [], config);
    else model.addFhirStore(name, config);
    model.resourcesChanged();
    sendJson(res, 200, json(name));
    return true;
  }
  const name = `${dataset}/${collection}/${id}`;
  const rec = map.get(name);
  if (rec === undefined) throw notFound(`${label} "${name}" not found`);
  if (method === "GET") {
    sendJson(res, 200, json(name));
    return true;
  }
  if (method === "PATCH") {
    rec.config = applyMask(kind, version, rec.config, await readJson(req), url.searchParams.get("updateMask"));
    model.resourcesChanged();
    sendJson(res, 200, json(name));
    return true;
  }
  if (method === "DELETE") {
    map.delete(name);
    model.iam.delete(name);
    model.resourcesChanged();
    sendJson(res, 200, {});
    return true;
  }
  return false;
}

/** The list `filter` the API supports for stores: `labels.KEY=VALUE` or `labels.KEY:*`, joined by AND. */
function labelFilter(filter: string | null, config: (n: string) => Record<string, unknown>): (n: string) => boolean {
  if (filter === null || filter.trim() === "") return () => true;
  const terms = filter.split(/\s+AND\s+/).map((t) => {
    const m = /^labels\.([\p{Ll}\p{N}_-]+)\s*(=|:)\s*"?([^"]*)"?$/u.exec(t.trim());
    if (m === null) throw invalidArgument(`unsupported filter "${t}": use labels.KEY=VALUE or labels.KEY:*`);
    return { key: m[1]!, op: m[2]!, value: m[3]! };
  });
  return (n) => {
    const labels = (config(n)["labels"] ?? {}) as Record<string, string>;
    return terms.every((t) => (t.op === ":" && t.value === "*" ? t.key in labels : labels[t.key] === t.value));
  };
}

const IAM_TARGET = /^projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+(?:\/(dicomStores|fhirStores)\/[^/]+)?$/;

async function iamRoute(
  model: HealthcareModel,
  resource: string,
  verb: string,
  method: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<boolean> {
  const m = IAM_TARGET.exec(resource);
  if (m === null) return false;
  const exists =
    m[1] === "dicomStores"
      ? model.dicomStores.has(resource)
      : m[1] === "fhirStores"
        ? model.fhirStores.has(resource)
        : model.datasets.has(resource);
  if (!exists) throw notFound(`Resource "${resource}" not found`);
  if (verb === "getIamPolicy" && (method === "GET" || method === "POST")) {
    const asked =
      method === "GET"
        ? url.searchParams.get("options.requestedPolicyVersion")
        : String(
            ((await readJson(req))["options"] as { requestedPolicyVersion?: unknown } | undefined)
              ?.requestedPolicyVersion ?? "",
          );
    if (asked !== null && asked !== "" && !["0", "1", "3"].includes(asked))
      throw invalidArgument(`Invalid requested policy version ${asked}: use 1 or 3`);
    sendJson(res, 200, model.iam.get(resource));
    return true;
  }
  if (verb === "setIamPolicy" && method === "POST") {
    sendJson(res, 200, model.iam.set(resource, await readJson(req)));
    model.resourcesChanged();
    return true;
  }
  return false;
}
