import { HcexportError, HttpError, UsageError } from "../core/errors.ts";
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

/** The Healthcare API calls the workflow makes (a port; fakes in unit tests). */
export interface HealthcareApi {
  /** Starts `dicomStores.export` to `gs://…`; returns the operation name. Not retried: see below. */
  startExport(store: string, uriPrefix: string): Promise<string>;
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
  const root = `${base.replace(/\/+$/, "")}/${version}`;
  return {
    async startExport(store, uriPrefix) {
      const op = await client.json<{ name?: unknown }>("POST", `${root}/${store}:export`, { body: { gcsDestination: { uriPrefix } }, retry: false }).catch((err: unknown) => {
        if (err instanceof HttpError && err.status === 404) throw new UsageError(`DICOM store ${store} not found: ${err.message}`, { hint: "check the store name in the config (projects/P/locations/L/datasets/D/dicomStores/S)" });
        throw err;
      });
      if (typeof op?.name !== "string") throw new Error(`export of ${store} returned no operation name`);
      return op.name;
    },
    async getOperation(name) {
      const op = await client.json<Operation>("GET", `${root}/${name}`).catch((err: unknown) => {
        if (err instanceof HttpError && err.status === 404) {
          throw new HcexportError(`operation ${name} not found`, 1, { hint: "operation records expire about 30 days after they finish; list the dataset's with 'hcexport operations list projects/P/locations/L/datasets/D'", cause: err });
        }
        throw err;
      });
      if (typeof op?.name !== "string") throw new Error(`operation ${name}: malformed response`);
      return op;
    },
    async listOperations(dataset) {
      const out: Operation[] = [];
      let pageToken: string | undefined;
      do {
        const page: { operations?: Operation[]; nextPageToken?: string } = await client.json("GET", `${root}/${dataset}/operations`, { query: { pageSize: 100, pageToken } });
        out.push(...(page?.operations ?? []));
        pageToken = page?.nextPageToken;
      } while (pageToken !== undefined && pageToken !== "");
      return out;
    },
    async cancelOperation(name) {
      await client.json("POST", `${root}/${name}:cancel`, { body: {} });
    },
  };
}
