import { dicomwebSource, resolveDicomwebBase } from "../dicomweb/client.ts";
import type { DicomwebSource } from "../dicomweb/pull.ts";
import { authFor } from "../gcp/auth.ts";
import { resolveEndpoints } from "../gcp/endpoints.ts";
import { basicAuth, bearerAuth } from "../net/auth.ts";
import { anonymousAuth, HttpClient, type AuthHeaders } from "../net/http-client.ts";
import type { CliIo, GlobalArgs } from "./context.ts";

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
