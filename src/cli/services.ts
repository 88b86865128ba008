import { parseStoreName, serviceAgentFor } from "../core/resource-names.ts";
import { fetchAnnotations } from "../fhir/annotations.ts";
import type { GoogleCredentials } from "../gcp/auth.ts";
import { bigqueryAdmin, bigqueryBase, type BigQueryAdmin } from "../gcp/bigquery.ts";
import { resolveEndpoints, type Endpoints } from "../gcp/endpoints.ts";
import { gcsSource } from "../gcp/gcs-objects.ts";
import { healthcareApi } from "../gcp/healthcare.ts";
import { projectNumber } from "../gcp/resource-manager.ts";
import { storageAdmin } from "../gcp/storage-admin.ts";
import { HttpClient } from "../net/http-client.ts";
import type { PipelinePorts } from "../pipeline/steps.ts";
import type { Config } from "../config/schema.ts";
import type { CliIo, GlobalArgs } from "./context.ts";
import { commandCredentials } from "./credentials.ts";

/** The real adapters for one invocation (Google, or the local cloud with `--emulator`). */
export interface Services {
  readonly endpoints: Endpoints;
  readonly client: HttpClient;
  readonly ports: PipelinePorts;
  /** BigQuery and project IAM for the metadata export (`HCEXPORT_BIGQUERY_ENDPOINT` overrides where). */
  readonly bigquery: BigQueryAdmin;
  close(): Promise<void>;
}

/**
 * Resolves endpoints and — unless `credentials: false` (plan, doctor) — the credentials, up front
 * and once (src/cli/credentials.ts), then builds the adapters on them.
 */
export async function createServices(
  args: GlobalArgs,
  io: CliIo,
  config?: Config,
  options: { readonly credentials?: boolean } = {},
): Promise<Services> {
  const endpoints = resolveEndpoints({ ...args, config: config?.endpoints }, io.env);
  const project = config?.project ?? args.project;
  const auth = await commandCredentials(args, io, endpoints, {
    projectId: project,
    resolve: options.credentials !== false,
  });
  const client = new HttpClient({
    auth,
    connections: Math.max(8, config?.mirror.concurrency ?? 32),
    signal: io.signal,
  });
  const ports = pipelinePorts(
    client,
    endpoints,
    storageAdmin(endpoints, project, "library" in auth ? (auth as GoogleCredentials) : undefined, io.signal),
    io.signal,
  );
  const bigquery = bigqueryAdmin(
    client,
    bigqueryBase(endpoints, io.env["HCEXPORT_BIGQUERY_ENDPOINT"]),
    endpoints.resourceManager,
  );
  return { endpoints, client, ports: { ...ports, bigquery }, bigquery, close: () => client.close() };
}

/** The workflow's ports on one HTTP client: Healthcare, Cloud Storage listing/media, FHIR annotations. */
export function pipelinePorts(
  client: HttpClient,
  endpoints: Endpoints,
  buckets: PipelinePorts["buckets"],
  signal: AbortSignal,
): PipelinePorts {
  return {
    buckets,
    healthcare: healthcareApi(client, endpoints.healthcare),
    source: gcsSource(client, endpoints.storage),
    fetchAnnotations: (a) =>
      fetchAnnotations({
        client,
        healthcareBase: endpoints.healthcare,
        storageBase: endpoints.storage,
        fhirStore: a.store,
        documentReference: a.documentReference,
        dest: a.dest,
        signal,
      }),
  };
}

/** The source project's Healthcare service agent: from the config, else from its project number. */
export async function resolveServiceAgent(config: Config, services: Services): Promise<string> {
  if (config.serviceAgent !== undefined) return config.serviceAgent;
  const store = parseStoreName(config.exports[0]!.store);
  if (!store.ok) throw new Error(store.error);
  return serviceAgentFor(await projectNumber(services.client, services.endpoints.resourceManager, store.value.project));
}
