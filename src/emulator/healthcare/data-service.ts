import type { ServerResponse } from "node:http";
import { parseGsUri } from "../../core/resource-names.ts";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { EmulatorService } from "../types.ts";
import { runFhirExport } from "./fhir-export.ts";
import { fhirSearch, FhirSearchError } from "./fhir-search.ts";
import { runImport } from "./import-job.ts";
import { datasetOf, operationJson, type HealthcareModel } from "./model.ts";
import { invalidArgument, notFound, objectField, rejectUnknown } from "./rpc.ts";
import type { HealthcareServiceOptions } from "./service.ts";
import { stow } from "./stow.ts";

type Version = "v1" | "v1beta1";

/**
 * The Healthcare API routes that bring users' own data in and FHIR data out:
 * `dicomStores.import` (LRO), STOW-RS (`POST …/dicomWeb/studies[/S]`), `fhirStores.export` to
 * Cloud Storage (LRO) and FHIR search with Bundle paging.
 */
export function createHealthcareDataService(o: HealthcareServiceOptions): EmulatorService {
  const now = o.now ?? (() => new Date());
  return {
    async handle(req, res, url, ctx) {
      const m = /^\/(v1|v1beta1)\/(projects\/.+)$/.exec(url.pathname);
      if (m === null) return false;
      const version = m[1] as Version;
      const path = m[2]!.split("/").map(decodeSegment).join("/");
      const method = req.method ?? "GET";
      const dicom =
        /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+\/dicomStores\/[^/:]+)(:import|\/dicomWeb\/studies(?:\/([^/]+))?)$/.exec(
          path,
        );
      if (dicom !== null && method === "POST") {
        const store = o.model.dicomStores.get(dicom[1]!);
        if (store === undefined) throw notFound(`DICOM store "${dicom[1]}" not found`);
        if (dicom[2] === ":import") {
          const body = await readJson(req);
          rejectUnknown(body, ["gcsSource", "blobStorageSettings"], "");
          const source = objectField(body, "gcsSource");
          if (source === undefined) throw invalidArgument("gcsSource is required");
          rejectUnknown(source, ["uri"], "gcsSource.");
          const uri = parse(source["uri"], "gcsSource.uri");
          const op = newOp(o.model, version, store.name, "dicom.DicomService.ImportDicomData", uri.text, now);
          o.model.track(
            runImport({
              op,
              store,
              bucket: uri.bucket,
              pattern: uri.prefix,
              serviceAgent: serviceAgent(o, store.name),
              objects: o.objects,
              now,
              onChange: (final) => {
                o.model.changed(final);
                o.model.resourcesChanged();
              },
              signal: o.model.shutdown.signal,
            }),
          );
          sendJson(res, 200, operationJson(op));
          return true;
        }
        await stow(req, res, store, dicom[3], `${ctx.baseUrl}/${version}/${store.name}/dicomWeb`);
        o.model.resourcesChanged();
        return true;
      }
      const fhirExport = /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+\/fhirStores\/[^/:]+):export$/.exec(path);
      if (fhirExport !== null && method === "POST") {
        const store = o.model.fhirStores.get(fhirExport[1]!);
        if (store === undefined) throw notFound(`FHIR store "${fhirExport[1]}" not found`);
        const body = await readJson(req);
        rejectUnknown(body, ["gcsDestination", "bigqueryDestination", "_type", "_since"], "");
        if (body["bigqueryDestination"] !== undefined)
          throw new ApiError(
            501,
            "notImplemented",
            "the hcexport emulator exports FHIR resources only to Cloud Storage",
          );
        const dest = objectField(body, "gcsDestination");
        if (dest === undefined) throw invalidArgument("gcsDestination is required");
        rejectUnknown(dest, ["uriPrefix"], "gcsDestination.");
        const uri = parse(dest["uriPrefix"], "gcsDestination.uriPrefix");
        const since = body["_since"] === undefined ? undefined : new Date(String(body["_since"]));
        if (since !== undefined && Number.isNaN(since.getTime()))
          throw invalidArgument(`invalid _since "${String(body["_since"])}"`);
        const types =
          typeof body["_type"] === "string"
            ? body["_type"]
                .split(",")
                .map((t) => t.trim())
                .filter(Boolean)
            : [];
        const op = newOp(o.model, version, store.name, "fhir.FhirStoreService.ExportResources", uri.text, now);
        o.model.track(
          runFhirExport({
            op,
            store,
            bucket: uri.bucket,
            prefix: uri.prefix.replace(/\/+$/, ""),
            types,
            ...(since === undefined ? {} : { since }),
            serviceAgent: serviceAgent(o, store.name),
            objects: o.objects,
            now,
            onChange: (final) => o.model.changed(final),
          }),
        );
        sendJson(res, 200, operationJson(op));
        return true;
      }
      const search =
        /^(projects\/[^/]+\/locations\/[^/]+\/datasets\/[^/]+\/fhirStores\/[^/]+)\/fhir\/([A-Z][A-Za-z]+)$/.exec(path);
      if (search !== null && method === "GET") {
        const store = o.model.fhirStores.get(search[1]!);
        if (store === undefined) return outcome(res, 404, "not-found", `FHIR store ${search[1]} not found`);
        const self = new URL(url.toString());
        self.searchParams.delete("_page_token");
        const base = `${ctx.baseUrl}/${version}/${store.name}/fhir`;
        const strict = /handling\s*=\s*strict/i.test(String(req.headers["prefer"] ?? ""));
        try {
          const bundle = fhirSearch(
            store.resources.values(),
            search[2]!,
            url.searchParams,
            self.toString(),
            base,
            strict,
          );
          const text = JSON.stringify(bundle);
          res.writeHead(200, {
            "content-type": "application/fhir+json; charset=utf-8",
            "content-length": Buffer.byteLength(text),
          });
          res.end(text);
        } catch (err) {
          if (!(err instanceof FhirSearchError)) throw err;
          return outcome(res, 400, "invalid", err.message);
        }
        return true;
      }
      return false;
    },
  };
}

function parse(raw: unknown, field: string) {
  if (typeof raw !== "string" || raw === "") throw invalidArgument(`${field} is required`);
  const uri = parseGsUri(raw);
  if (!uri.ok) throw invalidArgument(`invalid ${field} "${raw}": ${uri.error}`);
  return { bucket: uri.value.bucket, prefix: uri.value.prefix, text: raw };
}

function newOp(
  model: HealthcareModel,
  version: Version,
  source: string,
  method: string,
  destination: string,
  now: () => Date,
) {
  return model.newOperation(
    {
      dataset: datasetOf(source),
      apiVersion: version,
      method,
      counter: { success: 0, failure: 0, pending: 0 },
      source,
      destination,
    },
    now(),
  );
}

function serviceAgent(o: HealthcareServiceOptions, storeName: string): string {
  const project = storeName.split("/")[1]!;
  return `service-${o.projects.ensure(project).projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`;
}

function outcome(res: ServerResponse, status: number, code: string, diagnostics: string): true {
  const text = JSON.stringify({ resourceType: "OperationOutcome", issue: [{ severity: "error", code, diagnostics }] });
  res.writeHead(status, {
    "content-type": "application/fhir+json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
  return true;
}

/**
 * Ends the imports and FHIR exports a previous emulator process left unfinished (kept with
 * `--data`): unlike a DICOM export they are not restarted, so they end with code 10 ABORTED.
 */
export function abortUnfinished(model: HealthcareModel, now: () => Date = () => new Date()): void {
  for (const op of model.operations()) {
    if (op.done || op.method === "dicom.DicomService.ExportDicomData") continue;
    if (op.method === "dataset.DatasetService.CreateDataset") {
      Object.assign(op, { done: true, endTime: now().toISOString() });
    } else {
      Object.assign(op, {
        done: true,
        endTime: now().toISOString(),
        error: { code: 10, message: "The emulator restarted before this operation finished; run it again." },
      });
    }
    model.changed(true);
  }
}
