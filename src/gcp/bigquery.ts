import { HttpError, PermissionError, UsageError } from "../core/errors.ts";
export { parseTableUri } from "../core/resource-names.ts";
import type { HttpClient } from "../net/http-client.ts";
import type { Policy } from "../workflow/iam-policy.ts";
import type { Endpoints } from "./endpoints.ts";

/** A dataset access entry (BigQuery returns the data roles as OWNER/WRITER/READER). */
export interface DatasetAccessEntry {
  role?: string;
  userByEmail?: string;
  groupByEmail?: string;
  domain?: string;
  specialGroup?: string;
  iamMember?: string;
  [extra: string]: unknown;
}

export interface DatasetInfo {
  readonly etag?: string;
  readonly location?: string;
  readonly access?: DatasetAccessEntry[];
}

export interface TableInfo {
  /** Rows in the table (BigQuery sends int64 as a string). */
  readonly numRows: string;
  readonly numBytes?: string;
}

/** What hcexport needs from BigQuery and the destination project's IAM (a port; fakes in unit tests). */
export interface BigQueryAdmin {
  getDataset(project: string, dataset: string): Promise<DatasetInfo | undefined>;
  /** Creates the dataset; `created: false` when it already exists (409). */
  createDataset(project: string, dataset: string, location?: string): Promise<{ created: boolean }>;
  getTable(project: string, dataset: string, table: string): Promise<TableInfo | undefined>;
  /** The project's IAM policy (Resource Manager `getIamPolicy`, policy version 3). */
  getProjectPolicy(project: string): Promise<Policy>;
  /** Writes it; rejects with an error whose `status` is 409 (Resource Manager) or 412 when its etag is stale. */
  setProjectPolicy(project: string, policy: Policy): Promise<Policy>;
}

/** Where BigQuery lives: an explicit URL, else the local cloud's single origin, else Google. */
export function bigqueryBase(endpoints: Endpoints, override?: string): string {
  if (override !== undefined && override !== "") return override.replace(/\/+$/, "").replace(/\/bigquery\/v2$/, "");
  return endpoints.anonymous ? endpoints.healthcare : "https://bigquery.googleapis.com";
}

/** BigQuery v2 REST and Resource Manager project IAM over HttpClient (ADC, or anonymous against the local cloud). */
export function bigqueryAdmin(client: HttpClient, base: string, resourceManager: string): BigQueryAdmin {
  const root = `${base.replace(/\/+$/, "")}/bigquery/v2`;
  const rm = `${resourceManager.replace(/\/+$/, "")}/v1`;
  const enc = encodeURIComponent;
  const denied = (what: string, hint: string) => (err: unknown) => {
    if (err instanceof HttpError && (err.status === 403 || err.status === 401))
      throw new PermissionError(`could not ${what}: ${err.message}`, { hint });
    throw err;
  };
  return {
    async getDataset(project, dataset) {
      const d = await client
        .json<DatasetInfo & { error?: unknown }>("GET", `${root}/projects/${enc(project)}/datasets/${enc(dataset)}`, {
          accept: [404],
        })
        .catch(
          denied(
            `read BigQuery dataset ${project}:${dataset}`,
            "the caller needs bigquery.datasets.get (e.g. roles/bigquery.dataViewer) on the dataset",
          ),
        );
      return d === undefined || d.error !== undefined ? undefined : d;
    },
    async createDataset(project, dataset, location) {
      try {
        await client.json("POST", `${root}/projects/${enc(project)}/datasets`, {
          body: {
            datasetReference: { projectId: project, datasetId: dataset },
            ...(location === undefined ? {} : { location }),
          },
        });
        return { created: true };
      } catch (err) {
        if (err instanceof HttpError && err.status === 409) return { created: false };
        if (err instanceof HttpError && err.status === 400)
          throw new UsageError(`cannot create BigQuery dataset ${project}:${dataset}: ${err.message}`);
        return denied(
          `create BigQuery dataset ${project}:${dataset}`,
          "the caller needs bigquery.datasets.create (e.g. roles/bigquery.user) on the project",
        )(err);
      }
    },
    async getTable(project, dataset, table) {
      const t = await client.json<{ numRows?: unknown; numBytes?: unknown; error?: unknown }>(
        "GET",
        `${root}/projects/${enc(project)}/datasets/${enc(dataset)}/tables/${enc(table)}`,
        { accept: [404] },
      );
      if (t === undefined || t.error !== undefined) return undefined;
      if (typeof t.numRows !== "string" || !/^\d+$/.test(t.numRows))
        throw new Error(`BigQuery table ${project}:${dataset}.${table}: no numRows in the response`);
      return { numRows: t.numRows, ...(typeof t.numBytes === "string" ? { numBytes: t.numBytes } : {}) };
    },
    async getProjectPolicy(project) {
      const p = await client
        .json<Policy>("POST", `${rm}/projects/${enc(project)}:getIamPolicy`, {
          body: { options: { requestedPolicyVersion: 3 } },
        })
        .catch(
          denied(
            `read the IAM policy of project ${project}`,
            "the caller needs resourcemanager.projects.getIamPolicy on the project (e.g. roles/iam.securityReviewer)",
          ),
        );
      if (typeof p !== "object" || p === null || (p.bindings !== undefined && !Array.isArray(p.bindings)))
        throw new Error(`IAM policy of project ${project}: malformed response`);
      return p;
    },
    async setProjectPolicy(project, policy) {
      // Not retried here: a stale etag (409/412) means read-modify-write again, which the caller does.
      return client
        .json<Policy>("POST", `${rm}/projects/${enc(project)}:setIamPolicy`, { body: { policy }, retry: false })
        .catch(
          denied(
            `write the IAM policy of project ${project}`,
            "the caller needs resourcemanager.projects.setIamPolicy on the project (e.g. roles/resourcemanager.projectIamAdmin)",
          ),
        );
    },
  };
}
