import type { GoogleAuth } from "google-auth-library";
import { anonymousAuth, type AuthHeaders } from "../net/http-client.ts";
import { CREDENTIALS_HINT, HcexportError, PermissionError } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import { mayCarryGoogleCredentials } from "./credential-destination.ts";
import type { Endpoints } from "./endpoints.ts";

const SCOPES = ["https://www.googleapis.com/auth/cloud-platform"];

export { CREDENTIALS_HINT };

/** Google Application Default Credentials for one invocation. */
export interface GoogleCredentials extends AuthHeaders {
  /** Loads the credential and mints (or refreshes) a token: fails fast, classified (see `credentialError`). */
  resolve(): Promise<void>;
  /** The credential kind, for `doctor`. */
  kind(): Promise<string>;
  /** The library instance, shared with the Storage SDK so credentials are resolved once. */
  library(): Promise<GoogleAuth>;
}

export interface GoogleAuthOptions {
  /** Whether a URL may receive the credentials (default: `mayCarryGoogleCredentials` for no extra endpoints). */
  readonly allowed?: (url: URL) => boolean;
  /**
   * Given to the library so it never looks a project up itself: without one it runs
   * `gcloud config config-helper` and asks the metadata server (seconds, retried). hcexport
   * passes projects explicitly, so the value is only a placeholder when none is known.
   */
  readonly projectId?: string | undefined;
  readonly given?: GoogleAuth;
}

/**
 * Application Default Credentials through google-auth-library: `gcloud auth application-default
 * login` user credentials, a service-account key in GOOGLE_APPLICATION_CREDENTIALS, workload
 * identity, or the metadata server on Google Cloud. Tokens are cached and refreshed by the
 * library and never logged; `description` names only the credential kind. `headers(url)` returns
 * nothing for a URL that may not carry them (`allowed`).
 */
export function googleAuth(options: GoogleAuthOptions = {}): GoogleCredentials {
  const allowed = options.allowed ?? ((url: URL) => mayCarryGoogleCredentials(url, []));
  let described = "Application Default Credentials";
  // The library is loaded on first use (~0.1 s of startup), so commands against the local cloud
  // and commands that never authenticate don't pay for it.
  let loading: Promise<GoogleAuth> | undefined;
  const lib = (): Promise<GoogleAuth> =>
    (loading ??=
      options.given !== undefined
        ? Promise.resolve(options.given)
        : import("google-auth-library").then((m) => {
            preventMetadataProbe(process.env);
            return new m.GoogleAuth({ scopes: SCOPES, projectId: options.projectId ?? "hcexport-unset-project" });
          }));
  let resolved: Promise<void> | undefined;
  return {
    get description() {
      return described;
    },
    async headers(url) {
      if (!allowed(url)) return {};
      let h: Headers;
      try {
        h = await (await lib()).getRequestHeaders(url.toString());
      } catch (err) {
        throw credentialError(err);
      }
      const out: Record<string, string> = {};
      h.forEach((v, k) => {
        out[k] = v;
      });
      return out;
    },
    resolve() {
      return (resolved ??= (async () => {
        try {
          const client = await (await lib()).getClient();
          described = credentialKind(client.constructor.name);
          await client.getAccessToken();
        } catch (err) {
          throw credentialError(err);
        }
      })());
    },
    async kind() {
      const client = await (await lib()).getClient();
      described = credentialKind(client.constructor.name);
      return described;
    },
    library: lib,
  };
}

/**
 * Stops google-auth-library from pinging the metadata server (169.254.169.254 and
 * metadata.google.internal, 3 s each, and a `MetadataLookupWarning` on an unexpected DNS error)
 * when there are no other credentials: on Google Cloud the BIOS vendor, the MAC prefix or the
 * Cloud Run variables already say so (gcp-metadata's own `bios-only` detection). A value the
 * user set for METADATA_SERVER_DETECTION or GCE_METADATA_HOST/IP is left alone.
 */
export function preventMetadataProbe(env: NodeJS.ProcessEnv): void {
  if (env["METADATA_SERVER_DETECTION"] !== undefined) return;
  if (env["GCE_METADATA_HOST"] !== undefined || env["GCE_METADATA_IP"] !== undefined) return;
  env["METADATA_SERVER_DETECTION"] = "bios-only";
}

const NETWORK_CODES = new Set([
  "ENOTFOUND",
  "EAI_AGAIN",
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/**
 * One error for every way credentials can fail, with the same fix everywhere: none found, a
 * missing or malformed key file, a refused refresh (`invalid_grant`: revoked or expired) → exit 3;
 * the token endpoint unreachable → exit 1 with "check the network". Messages are redacted (a token
 * endpoint may echo the request, refresh token included).
 */
export function credentialError(err: unknown): HcexportError {
  if (err instanceof HcexportError) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const message = redactSecrets(raw.replace(/\s+/g, " ").trim()).slice(0, 500);
  const code = networkCode(err);
  if (code !== undefined) {
    const host = /\b(?:getaddrinfo \w+|connect \w+) ([\w.:[\]-]+)/.exec(raw)?.[1];
    return new HcexportError(
      `cannot reach the Google token endpoint${host === undefined ? "" : ` (${host})`}: ${code}`,
      1,
      { hint: "check the network, proxy (HTTPS_PROXY) and DNS, then run the same command again", cause: err },
    );
  }
  const data = (err as { response?: { status?: unknown; data?: unknown } }).response;
  const oauth = typeof data?.data === "object" && data.data !== null ? (data.data as { error?: unknown }) : undefined;
  if (typeof oauth?.error === "string") {
    const desc = (oauth as { error_description?: unknown }).error_description;
    const detail = typeof desc === "string" ? `: ${redactSecrets(desc).slice(0, 200)}` : "";
    return new PermissionError(
      `no usable Google credentials: the token endpoint refused them (${oauth.error}${detail})`,
      {
        hint:
          oauth.error === "invalid_grant"
            ? `the refresh token was revoked or has expired: ${CREDENTIALS_HINT}`
            : CREDENTIALS_HINT,
        cause: err,
      },
    );
  }
  if (/Could not load the default credentials/.test(raw))
    return new PermissionError("no Google credentials found (Application Default Credentials)", {
      hint: CREDENTIALS_HINT,
      cause: err,
    });
  return new PermissionError(`no usable Google credentials: ${message}`, { hint: CREDENTIALS_HINT, cause: err });
}

function networkCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < 6; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && NETWORK_CODES.has(code)) return code;
    if (e instanceof AggregateError && e.errors.length > 0) e = e.errors[0];
    else e = (e as { cause?: unknown }).cause ?? (e as { error?: unknown }).error;
  }
  return undefined;
}

/** A human name for an auth client class; never includes secrets. */
export function credentialKind(className: string): string {
  switch (className) {
    case "UserRefreshClient":
      return "user credentials (gcloud auth application-default login)";
    case "JWT":
      return "service-account key (GOOGLE_APPLICATION_CREDENTIALS)";
    case "Compute":
      return "metadata server (attached service account)";
    case "Impersonated":
      return "impersonated service account";
    case "IdentityPoolClient":
    case "AwsClient":
    case "PluggableAuthClient":
    case "ExternalAccountAuthorizedUserClient":
      return "workload identity federation";
    default:
      return className;
  }
}

/** The configured endpoints of an invocation as the credential-destination rule sees them. */
export function configuredEndpoints(endpoints: Endpoints): string[] {
  return [endpoints.storage, endpoints.healthcare, endpoints.resourceManager];
}

/**
 * The auth for a set of endpoints: anonymous with `--emulator` or against all-loopback endpoints
 * (the library is never even loaded), otherwise ADC restricted by `mayCarryGoogleCredentials`.
 */
export function authFor(endpoints: Endpoints, projectId?: string): AuthHeaders | GoogleCredentials {
  if (endpoints.anonymous) return anonymousAuth;
  const configured = configuredEndpoints(endpoints);
  return googleAuth({ allowed: (url) => mayCarryGoogleCredentials(url, configured), projectId });
}
