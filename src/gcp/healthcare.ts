import { HcexportError, HttpError, UsageError } from "../core/errors.ts";
import { parseOperationName } from "../core/resource-names.ts";
import type { HttpClient } from "../net/http-client.ts";

/** A google.longrunning.Operation as the Healthcare API returns it. */
export interface Operation {
  readonly name: string;
  readonly done?: boolean;
  readonly error?: { readonly code: number; readonly message: string };
  readonly response?: Record<string, unknown>;
  readonly metadata?: {
    readonly apiMethodName?: string;
    readonly createTime?: string;
    readonly endTime?: string;
    readonly logsUrl?: string;
    readonly counter?: { readonly success?: string; readonly failure?: string; readonly pending?: string };
  };
}

/** Per-export options; `writeDisposition` applies to BigQuery destinations only, the others to `gs://`. */
export interface ExportOptions {
  readonly writeDisposition?: "WRITE_EMPTY" | "WRITE_TRUNCATE" | "WRITE_APPEND";
  /** `gcsDestination.mimeType` (checked by parseExportMimeType); unset: the instances as stored. */
  readonly mimeType?: string;
  /** `filterConfig.resourcePathsGcsUri`: a `gs://` object listing the studies/series to export (v1beta1 only). */
  readonly filterUri?: string;
}

/** The request body of `dicomStores.export` for a `gs://` or `bq://` destination. Pure. */
export function exportBody(destination: string, options: ExportOptions = {}): Record<string, unknown> {
  if (destination.startsWith("bq://"))
    return {
      bigqueryDestination: {
        tableUri: destination,
        ...(options.writeDisposition === undefined ? {} : { writeDisposition: options.writeDisposition }),
      },
    };
  return {
    gcsDestination: {
      uriPrefix: destination,
      ...(options.mimeType === undefined ? {} : { mimeType: options.mimeType }),
    },
    ...(options.filterUri === undefined ? {} : { filterConfig: { resourcePathsGcsUri: options.filterUri } }),
  };
}

/** The API version an export goes to: `filterConfig` exists only in v1beta1 (v1's ExportDicomDataRequest has none). */
export function exportVersion(options: ExportOptions = {}, otherwise: "v1" | "v1beta1" = "v1"): "v1" | "v1beta1" {
  return options.filterUri === undefined ? otherwise : "v1beta1";
}

/** The Healthcare API calls the workflow makes (a port; fakes in unit tests). */
export interface HealthcareApi {
  /**
   * Starts `dicomStores.export` to `gs://B/PREFIX`, or to BigQuery when `destination` is
   * `bq://P.D.T`; returns the operation name. Not retried: see below.
   */
  startExport(store: string, destination: string, options?: ExportOptions): Promise<string>;
  getOperation(name: string): Promise<Operation>;
  /** Operations of a dataset, newest last. */
  listOperations(dataset: string): Promise<Operation[]>;
  cancelOperation(name: string): Promise<void>;
}

/**
 * The Healthcare REST API over HttpClient. `startExport` is a non-idempotent POST, so it is sent
 * once: a caller that sees a transient failure must look for the operation in `listOperations`
 * before starting another export (the workflow does).
 */
export function healthcareApi(client: HttpClient, base: string, version: "v1" | "v1beta1" = "v1"): HealthcareApi {
  const rootOf = (v: "v1" | "v1beta1") => `${base.replace(/\/+$/, "")}/${v}`;
  const root = rootOf(version);
  return {
    async startExport(store, destination, options) {
      const op = await client
        .json<{ name?: unknown }>("POST", `${rootOf(exportVersion(options, version))}/${store}:export`, {
          body: exportBody(destination, options),
          retry: false,
        })
        .catch((err: unknown) => {
          if (err instanceof HttpError && err.status === 404)
            throw new UsageError(`DICOM store ${store} not found: ${err.message}`, {
              hint: "check the store name in the config (projects/P/locations/L/datasets/D/dicomStores/S)",
            });
          throw err;
        });
      if (typeof op?.name !== "string") throw new Error(`export of ${store} returned no operation name`);
      if (!parseOperationName(op.name).ok)
        throw new Error(
          `export of ${store} returned a malformed operation name ${JSON.stringify(op.name.slice(0, 200))}`,
        );
      return op.name;
    },
    async getOperation(name) {
      const op = await client.json<Operation>("GET", `${root}/${name}`).catch((err: unknown) => {
        if (err instanceof HttpError && err.status === 404) {
          throw new HcexportError(`operation ${name} not found`, 1, {
            hint: "operation records expire about 30 days after they finish; list the dataset's with 'hcexport operations list projects/P/locations/L/datasets/D'",
            cause: err,
          });
        }
        throw err;
      });
      const bad = malformedOperation(op);
      if (bad !== undefined) throw new Error(`operation ${name}: malformed response (${bad})`);
      return op;
    },
    async listOperations(dataset) {
      const out: Operation[] = [];
      let pageToken: string | undefined;
      do {
        const page: { operations?: unknown; nextPageToken?: unknown } | undefined = await client.json(
          "GET",
          `${root}/${dataset}/operations`,
          { query: { pageSize: 100, pageToken } },
        );
        if (
          typeof page !== "object" ||
          page === null ||
          (page.operations !== undefined && !Array.isArray(page.operations)) ||
          (page.nextPageToken !== undefined && typeof page.nextPageToken !== "string")
        ) {
          throw new Error(`operations of ${dataset}: malformed response`);
        }
        const ops = (page.operations ?? []) as unknown[];
        const bad = ops.map(malformedOperation).find((m) => m !== undefined);
        if (bad !== undefined) throw new Error(`operations of ${dataset}: malformed operation (${bad})`);
        out.push(...(ops as Operation[]));
        if (page.nextPageToken !== undefined && page.nextPageToken !== "" && page.nextPageToken === pageToken)
          throw new Error(`operations of ${dataset}: the server returned the same nextPageToken again`);
        pageToken = page.nextPageToken as string | undefined;
      } while (pageToken !== undefined && pageToken !== "");
      return out;
    },
    async cancelOperation(name) {
      await client.json("POST", `${root}/${name}:cancel`, { body: {} });
    },
  };
}

/** What is wrong with an answer that should be a google.longrunning.Operation, or undefined. */
function malformedOperation(op: unknown): string | undefined {
  if (typeof op !== "object" || op === null || Array.isArray(op))
    return op === undefined ? "empty body" : "not a JSON object";
  const o = op as Record<string, unknown>;
  if (typeof o["name"] !== "string") return '"name" is not a string';
  if (o["done"] !== undefined && typeof o["done"] !== "boolean") return '"done" is not a boolean';
  const isObject = (v: unknown) => typeof v === "object" && v !== null && !Array.isArray(v);
  for (const k of ["metadata", "response"]) if (o[k] !== undefined && !isObject(o[k])) return `"${k}" is not an object`;
  const e = o["error"];
  // proto3 JSON omits zero/empty fields, so code and message may be absent, but never of another type.
  const { code, message } = (isObject(e) ? e : {}) as { code?: unknown; message?: unknown };
  if (
    e !== undefined &&
    (!isObject(e) ||
      (code !== undefined && typeof code !== "number") ||
      (message !== undefined && typeof message !== "string"))
  )
    return '"error" is not {code: number, message: string}';
  return undefined;
}
