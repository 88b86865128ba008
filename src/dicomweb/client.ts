import { HcexportError, UsageError } from "../core/errors.ts";
import { parseStoreName } from "../core/resource-names.ts";
import type { HttpClient } from "../net/http-client.ts";
import { WANT_REPR_DIGEST } from "./digest.ts";
import { parseRows } from "./json-rows.ts";
import type { DicomwebSource } from "./pull.ts";

/** QIDO-RS and WADO-RS over HTTP against a DICOMweb base URL (Healthcare API or any server). */
export function dicomwebSource(client: HttpClient, base: string): DicomwebSource {
  const root = base.replace(/\/+$/, "");
  return {
    async search(path, query, signal, keep) {
      const rows = await client.json<unknown>("GET", `${root}/${path}`, {
        headers: { accept: "application/dicom+json" },
        query: query as Record<string, string | number | readonly string[]>,
        accept: [204],
        ...(signal === undefined ? {} : { signal }),
        ...(keep === undefined ? {} : { parse: (text: string) => parseRows(text, keep) }),
      });
      if (rows === undefined) return [];
      if (!Array.isArray(rows)) throw new HcexportError(`${path}: the QIDO-RS answer is not a JSON array`);
      return rows;
    },
    async retrieve(path, accept, signal) {
      const res = await client.stream("GET", `${root}/${path}`, {
        headers: { accept, "want-repr-digest": WANT_REPR_DIGEST },
        ...(signal === undefined ? {} : { signal }),
      });
      return { status: res.status, headers: res.headers, body: res.body as never };
    },
    retrieveInto: (path, accept, into, signal) =>
      client.receive("GET", `${root}/${path}`, into, {
        headers: { accept, "want-repr-digest": WANT_REPR_DIGEST },
        name: path,
        sizeFrom: "Content-Length's",
        ...(signal === undefined ? {} : { signal }),
      }),
  };
}

/**
 * Where `dicomweb pull` reads: a Healthcare DICOM store resource name (→ its `dicomWeb` base on the
 * Healthcare endpoint, Google credentials) or any `http(s)://` DICOMweb base URL.
 */
export function resolveDicomwebBase(
  target: string,
  healthcareEndpoint: string,
): { base: string; kind: "store" | "url"; label: string; userinfo?: { user: string; password: string } } {
  if (/^https?:\/\//i.test(target)) {
    let u: URL;
    try {
      u = new URL(target);
    } catch {
      throw new UsageError(`"${target}" is not a valid URL`);
    }
    // Credentials in the URL become basic auth and never appear in messages.
    const userinfo =
      u.username === ""
        ? undefined
        : { user: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
    u.username = "";
    u.password = "";
    const base = u.toString().replace(/\/+$/, "");
    return { base, kind: "url", label: base, ...(userinfo === undefined ? {} : { userinfo }) };
  }
  const store = parseStoreName(target, "dicomStores");
  if (!store.ok) throw new UsageError(`${store.error}, or an http(s):// DICOMweb base URL`);
  return { base: `${healthcareEndpoint.replace(/\/+$/, "")}/v1/${target}/dicomWeb`, kind: "store", label: target };
}
