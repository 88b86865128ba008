import { UsageError } from "../core/errors.ts";
import { isLoopbackUrl } from "./credential-destination.ts";

export { isLoopbackHttp } from "./credential-destination.ts";

/** Where the three Google APIs live, and whether requests carry credentials. */
export interface Endpoints {
  /** Cloud Storage base, without `/storage/v1` (e.g. `https://storage.googleapis.com`). */
  readonly storage: string;
  /** Healthcare API base, without the version (e.g. `https://healthcare.googleapis.com`). */
  readonly healthcare: string;
  /** Resource Manager base (e.g. `https://cloudresourcemanager.googleapis.com`). */
  readonly resourceManager: string;
  /** True with `--emulator` or all-loopback endpoints: no credentials are looked up or sent. */
  readonly anonymous: boolean;
}

export const GOOGLE_ENDPOINTS: Endpoints = {
  storage: "https://storage.googleapis.com",
  healthcare: "https://healthcare.googleapis.com",
  resourceManager: "https://cloudresourcemanager.googleapis.com",
  anonymous: false,
};

export interface EndpointInputs {
  readonly emulator?: string | undefined;
  readonly storageEndpoint?: string | undefined;
  readonly healthcareEndpoint?: string | undefined;
  readonly resourceManagerEndpoint?: string | undefined;
  /** The config file's `endpoints`, below flags and env in precedence. */
  readonly config?:
    | {
        readonly emulator?: string | undefined;
        readonly storage?: string | undefined;
        readonly healthcare?: string | undefined;
        readonly resourceManager?: string | undefined;
      }
    | undefined;
}

/**
 * Resolves endpoints with precedence flags/`HCEXPORT_*` env (already merged by yargs) >
 * `STORAGE_EMULATOR_HOST` (storage only) > config file > Google's defaults. An emulator URL sets
 * all three and means "no credentials", whatever its host (`http://emulator:8080` in a compose
 * file, `http://0.0.0.0:P`…). Without one, credentials are skipped only when every endpoint is
 * on loopback (HTTP, or HTTPS as served by `hcexport emulator --tls`). A URL that does not parse as http(s) is a usage error (exit 2).
 */
export function resolveEndpoints(inputs: EndpointInputs, env: NodeJS.ProcessEnv = {}): Endpoints {
  // An empty value (HCEXPORT_EMULATOR= in an environment) means "not set", as for any variable.
  const emulator = checkUrl("--emulator", nonEmpty(inputs.emulator) ?? nonEmpty(inputs.config?.emulator));
  const base =
    emulator === undefined
      ? GOOGLE_ENDPOINTS
      : { storage: emulator, healthcare: emulator, resourceManager: emulator, anonymous: true };
  const envStorage = env["STORAGE_EMULATOR_HOST"];
  const storage = trimSlash(
    inputs.storageEndpoint ??
      (envStorage ? withScheme(envStorage) : undefined) ??
      inputs.config?.storage ??
      base.storage,
  );
  const healthcare = trimSlash(inputs.healthcareEndpoint ?? inputs.config?.healthcare ?? base.healthcare);
  const resourceManager = trimSlash(
    inputs.resourceManagerEndpoint ?? inputs.config?.resourceManager ?? base.resourceManager,
  );
  checkUrl("the storage endpoint", storage);
  checkUrl("the Healthcare endpoint", healthcare);
  checkUrl("the Resource Manager endpoint", resourceManager);
  const anonymous = emulator !== undefined || [storage, healthcare, resourceManager].every(isLoopbackUrl);
  return { storage, healthcare, resourceManager, anonymous };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === "" ? undefined : value;
}

function checkUrl(what: string, url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (u === undefined || (u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "")
    throw new UsageError(`${what} ${JSON.stringify(url.slice(0, 200))} is not an http(s):// URL`, {
      hint: "give a base URL such as http://127.0.0.1:8080 (the local cloud) or https://storage.googleapis.com",
    });
  return url;
}

function withScheme(host: string): string {
  return /^https?:\/\//.test(host) ? host : `http://${host}`;
}

function trimSlash(url: string): string {
  // STORAGE_EMULATOR_HOST sometimes carries the API path; the adapters add it themselves.
  return url.replace(/\/+$/, "").replace(/\/storage\/v1$/, "");
}
