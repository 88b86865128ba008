import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Application Default Credentials that mint a known fake token: a loopback token endpoint and an
 * `external_account_authorized_user` credential file (its token_url is configurable) pointing at
 * it. Tests set GOOGLE_APPLICATION_CREDENTIALS to `file` and assert that `token` never shows.
 */
export async function startFakeAdc(
  token: string,
  dir: string,
): Promise<{ readonly file: string; tokenRequests(): number; close(): Promise<void> }> {
  let requests = 0;
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ access_token: token, expires_in: 3600, token_type: "Bearer" }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const tokenUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  const file = path.join(dir, "adc.json");
  await writeFile(
    file,
    JSON.stringify({
      type: "external_account_authorized_user",
      audience: "//iam.googleapis.com/locations/global/workforcePools/p/providers/x",
      client_id: "cid",
      client_secret: "csecret",
      refresh_token: "rtoken",
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
