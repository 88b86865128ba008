import { HcexportError, UsageError } from "../core/errors.ts";
import { authFor, configuredEndpoints } from "../gcp/auth.ts";
import { insecureEndpoints } from "../gcp/credential-destination.ts";
import type { Endpoints } from "../gcp/endpoints.ts";
import type { AuthHeaders } from "../net/http-client.ts";
import type { CliIo, GlobalArgs } from "./context.ts";

/** How long resolving credentials (reading ADC, minting one token) may take before exit 1. */
export const CREDENTIALS_TIMEOUT_MS = 10_000;

/**
 * Google credentials for a command, resolved once and up front — before any other network call —
 * so every command fails the same way, fast, with the fix: none or unusable → exit 3, token
 * endpoint unreachable → exit 1 (src/gcp/auth.ts `credentialError`). With `--emulator` or
 * all-loopback endpoints: anonymous, and the auth library is never loaded. A configured plain
 * `http://` endpoint that is not loopback would carry the token in clear text: refused (exit 2)
 * unless `--allow-insecure-auth` / HCEXPORT_ALLOW_INSECURE_AUTH, then a warning on stderr.
 */
export async function commandCredentials(
  args: GlobalArgs,
  io: CliIo,
  endpoints: Endpoints,
  options: { readonly projectId?: string | undefined; readonly resolve?: boolean } = {},
): Promise<AuthHeaders> {
  if (endpoints.anonymous) return authFor(endpoints);
  const clear = insecureEndpoints(configuredEndpoints(endpoints));
  if (clear.length > 0) {
    const what = `Google credentials would travel in clear text (plain http://) to ${clear.join(", ")}`;
    // yargs reads HCEXPORT_ALLOW_INSECURE_AUTH=1 as false for a boolean: accept 1/true/yes from the env directly.
    if (args.allowInsecureAuth !== true && !truthy(io.env["HCEXPORT_ALLOW_INSECURE_AUTH"]))
      throw new UsageError(`refusing to send credentials: ${what}`, {
        hint: "use an https:// endpoint; for the local cloud use --emulator URL (no credentials at all); on a network you trust pass --allow-insecure-auth (or HCEXPORT_ALLOW_INSECURE_AUTH=1)",
      });
    io.stderr.write(`warning: ${what} (--allow-insecure-auth)\n`);
  }
  const auth = authFor(endpoints, options.projectId);
  if (options.resolve !== false && "resolve" in auth) await withTimeout(auth.resolve(), CREDENTIALS_TIMEOUT_MS);
  return auth;
}

/** `1`, `true`, `yes` (any case). */
function truthy(value: unknown): boolean {
  return value === true || ["1", "true", "yes"].includes(String(value).toLowerCase());
}

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new HcexportError(`no answer from the Google token endpoint within ${ms / 1000} s`, 1, {
            hint: "check the network, proxy (HTTPS_PROXY) and DNS, then run the same command again",
          }),
        ),
      ms,
    );
    timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
