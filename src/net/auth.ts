import type { AuthHeaders } from "./http-client.ts";

/** HTTP basic auth (e.g. an Orthanc DICOMweb server). The password never appears in `description`. */
export function basicAuth(user: string, password: string): AuthHeaders {
  const value = `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
  return { headers: async () => ({ authorization: value }), description: `basic auth as ${user}` };
}

/** A static bearer token (e.g. `--token` or `HCEXPORT_TOKEN`). The token never appears in `description`. */
export function bearerAuth(token: string): AuthHeaders {
  return { headers: async () => ({ authorization: `Bearer ${token}` }), description: "static bearer token" };
}
