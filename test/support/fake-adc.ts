import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * How the fake token endpoint answers: `ok` mints `token`; `invalid_grant` is Google's answer for
 * a revoked or expired refresh token (400); `echo` is a (proxy-fronted) endpoint that quotes the
 * request back — form body and Authorization header, refresh token and client secret included —
 * in a 400 error.
 */
export type FakeAdcMode = "ok" | "invalid_grant" | "echo";

/** Secrets in the credential file, by default short markers; tests may pass realistic shapes. */
export interface FakeAdcSecrets {
  readonly refreshToken?: string;
  readonly clientSecret?: string;
  /** A token_url to write instead of the fake server's (e.g. a host under `.invalid`). */
  readonly tokenUrl?: string;
}

/**
 * Application Default Credentials that mint a known fake token: a loopback token endpoint and an
 * `external_account_authorized_user` credential file (its token_url is configurable) pointing at
 * it. Tests set GOOGLE_APPLICATION_CREDENTIALS to `file` and assert that `token` never shows.
 */
export async function startFakeAdc(
  token: string,
  dir: string,
  mode: FakeAdcMode = "ok",
  secrets: FakeAdcSecrets = {},
): Promise<{ readonly file: string; tokenRequests(): number; close(): Promise<void> }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    let body = "";
    req.setEncoding("utf8").on("data", (d: string) => (body += d));
    req.on("end", () => {
      if (mode === "ok") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ access_token: token, expires_in: 3600, token_type: "Bearer" }));
      } else if (mode === "invalid_grant") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "invalid_grant", error_description: "Token has been expired or revoked." }));
      } else {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            error: "invalid_request",
            error_description: `could not parse ${req.method} ${req.url} authorization: ${req.headers.authorization ?? ""} body: ${body}`,
            request: { headers: req.headers, body },
          }),
        );
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const tokenUrl = secrets.tokenUrl ?? `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  const file = path.join(dir, mode === "ok" ? "adc.json" : `adc-${mode}.json`);
  await writeFile(
    file,
    JSON.stringify({
      type: "external_account_authorized_user",
      audience: "//iam.googleapis.com/locations/global/workforcePools/p/providers/x",
      client_id: "cid",
      client_secret: secrets.clientSecret ?? "csecret",
      refresh_token: secrets.refreshToken ?? "rtoken",
      token_url: tokenUrl,
      token_info_url: tokenUrl,
    }),
  );
  return { file, tokenRequests: () => requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/**
 * Flags that point all three endpoints at `url` as real (non-emulator) endpoints: credentials are
 * looked up and sent. For `http://0.0.0.0:P` (the local cloud, but not a loopback spelling) the
 * clear-text refusal is lifted with `--allow-insecure-auth`. (`--emulator` never sends credentials.)
 */
export function credentialedEndpointArgs(url: string): string[] {
  return [
    "--storage-endpoint",
    url,
    "--healthcare-endpoint",
    url,
    "--resource-manager-endpoint",
    url,
    "--allow-insecure-auth",
  ];
}

/** The same as environment variables (HCEXPORT_*), for tests that set an environment instead of flags. */
export function credentialedEndpointEnv(url: string): Record<string, string> {
  return {
    HCEXPORT_STORAGE_ENDPOINT: url,
    HCEXPORT_HEALTHCARE_ENDPOINT: url,
    HCEXPORT_RESOURCE_MANAGER_ENDPOINT: url,
    HCEXPORT_ALLOW_INSECURE_AUTH: "true",
  };
}

/**
 * An environment with no Application Default Credentials of the machine's own: an empty HOME and
 * gcloud config directory, GOOGLE_APPLICATION_CREDENTIALS empty (the library treats "" as unset).
 * Spawned CLIs inherit the test runner's environment, so tests that are about credentials start here.
 */
export function noAdcEnv(home: string): Record<string, string> {
  return {
    HOME: home,
    CLOUDSDK_CONFIG: path.join(home, "gcloud"),
    GOOGLE_APPLICATION_CREDENTIALS: "",
    GOOGLE_CLOUD_PROJECT: "",
    GCLOUD_PROJECT: "",
  };
}
