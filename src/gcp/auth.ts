import type { GoogleAuth } from "google-auth-library";
import { anonymousAuth, type AuthHeaders } from "../net/http-client.ts";
import { PermissionError } from "../core/errors.ts";
import type { Endpoints } from "./endpoints.ts";

const SCOPES = ["https://www.googleapis.com/auth/cloud-platform"];

/**
 * Application Default Credentials through google-auth-library: `gcloud auth application-default
 * login` user credentials, a service-account key in GOOGLE_APPLICATION_CREDENTIALS, workload
 * identity, or the metadata server. Tokens are cached and refreshed by the library and never
 * logged; `description` names only the credential kind.
 */
export function googleAuth(given?: GoogleAuth): AuthHeaders & { kind(): Promise<string> } {
  let described = "Application Default Credentials";
  // The library is loaded on first use (~0.1 s of startup), so commands against the local cloud
  // and commands that never authenticate don't pay for it.
  let loading: Promise<GoogleAuth> | undefined;
  const lib = (): Promise<GoogleAuth> =>
    (loading ??=
      given !== undefined
        ? Promise.resolve(given)
        : import("google-auth-library").then((m) => new m.GoogleAuth({ scopes: SCOPES })));
  return {
    get description() {
      return described;
    },
    async headers(url) {
      let h: Headers;
      try {
        h = await (await lib()).getRequestHeaders(url.toString());
      } catch (err) {
        throw new PermissionError(`no usable Google credentials: ${err instanceof Error ? err.message : String(err)}`, {
          hint: "run 'gcloud auth application-default login', or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file",
          cause: err,
        });
      }
      const out: Record<string, string> = {};
      h.forEach((v, k) => {
        out[k] = v;
      });
      return out;
    },
    async kind() {
      const client = await (await lib()).getClient();
      described = credentialKind(client.constructor.name);
      return described;
    },
  };
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

/** The auth for a set of endpoints: anonymous against the local cloud, ADC otherwise. */
export function authFor(endpoints: Endpoints): AuthHeaders {
  return endpoints.anonymous ? anonymousAuth : googleAuth();
}
