import { dicomwebSource, resolveDicomwebBase } from "../dicomweb/client.ts";
import type { DicomwebSource } from "../dicomweb/pull.ts";
import { authFor } from "../gcp/auth.ts";
import { resolveEndpoints } from "../gcp/endpoints.ts";
import { basicAuth, bearerAuth } from "../net/auth.ts";
import { anonymousAuth, HttpClient, type AuthHeaders } from "../net/http-client.ts";
import { DestinationError, PartialFailureError } from "../core/errors.ts";
import type { PullSummary } from "../dicomweb/pull.ts";
import type { CliIo, GlobalArgs } from "./context.ts";
import { table } from "./format.ts";
import type { Output } from "./output.ts";

/**
 * Credentials for a DICOMweb URL: `HCEXPORT_DICOMWEB_TOKEN` (bearer), `HCEXPORT_DICOMWEB_USER` +
 * `HCEXPORT_DICOMWEB_PASSWORD` (basic), or `user:password@` in the URL; from the environment so
 * that they never sit in shell history or process listings.
 */
export function dicomwebAuth(env: NodeJS.ProcessEnv, userinfo?: { user: string; password: string }): AuthHeaders {
  const token = env["HCEXPORT_DICOMWEB_TOKEN"];
  if (token !== undefined && token !== "") return bearerAuth(token);
  const user = env["HCEXPORT_DICOMWEB_USER"];
  if (user !== undefined && user !== "") return basicAuth(user, env["HCEXPORT_DICOMWEB_PASSWORD"] ?? "");
  if (userinfo !== undefined) return basicAuth(userinfo.user, userinfo.password);
  return anonymousAuth;
}

/** A DICOMweb service from a `STORE|URL` argument: the HTTP client (close it) and the source over it. */
export function connectDicomweb(
  args: GlobalArgs & { source: string },
  io: CliIo,
  connections: number,
): { client: HttpClient; source: DicomwebSource; label: string } {
  const endpoints = resolveEndpoints(args, io.env);
  const target = resolveDicomwebBase(args.source, endpoints.healthcare);
  const auth = target.kind === "store" ? authFor(endpoints) : dicomwebAuth(io.env, target.userinfo);
  const client = new HttpClient({ auth, connections });
  return { client, source: dicomwebSource(client, target.base), label: target.label };
}

/**
 * Prints a pull/get summary and turns its problems into the exit code `pull` uses: the
 * destination's fault (full, read-only), else 5 when some items failed or were refused.
 */
export function finishDicomweb(out: Output, summary: PullSummary, dest: string, what: string): void {
  const secs = summary.durationMs / 1000;
  out.result(
    table([
      ["listed", "written", "already here", "failed", "refused", "MiB", "seconds"],
      [
        summary.listed,
        summary.downloaded,
        summary.skipped,
        summary.failed,
        summary.refused,
        (summary.bytes / 1048576).toFixed(1),
        secs.toFixed(2),
      ].map(String),
    ]),
    { summary },
  );
  if (summary.destinationFault !== undefined)
    throw new DestinationError(dest, summary.destinationFault, summary.downloaded);
  const bad = summary.failed + summary.refused;
  if (bad > 0)
    throw new PartialFailureError(
      `${bad} ${what} failed (${summary.problems[0]?.reason ?? "see above"}); the rest landed`,
      bad,
      {
        hint: "run the same command again: what is complete on disk is not fetched again",
      },
    );
}
