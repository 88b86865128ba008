import { writeFileAtomic } from "../core/atomic-file.ts";
import { HcexportError, UsageError } from "../core/errors.ts";
import type { HttpClient } from "../net/http-client.ts";
import { summarizeAnnotations, type AnnotationsSummary } from "./annotations-csv.ts";

export interface FhirTarget {
  /** Authenticated client for the Healthcare API (and its host). */
  readonly client: HttpClient;
  readonly healthcareBase: string;
  readonly storageBase: string;
  readonly fhirStore: string;
  readonly signal?: AbortSignal;
}

export interface FetchAnnotationsOptions extends FhirTarget {
  readonly documentReference: string;
  readonly dest: string;
}

export interface FetchedAttachment {
  readonly path: string;
  readonly bytes: number;
  /** The attachment's URL, or `data:` for inline data. */
  readonly url: string;
  /** Set when the attachment is a SIIM annotations CSV (`ImageId, EncodedPixels`). */
  readonly summary?: AnnotationsSummary;
}

export interface FetchedAnnotations extends FetchedAttachment {
  readonly summary: AnnotationsSummary;
}

/** A FHIR attachment (R4 `Attachment`): by URL or inline base64 `data`. */
export interface Attachment {
  readonly url?: string;
  readonly data?: string;
  readonly title?: string;
  readonly contentType?: string;
}

/** `Type/ID` with FHIR's own rules for both (R4 §2.1.0.3: ids are `[A-Za-z0-9\-.]{1,64}`). */
export function parseResourceRef(ref: string): { type: string; id: string } {
  const m = /^([A-Z][A-Za-z]{1,63})\/([A-Za-z0-9\-.]{1,64})$/.exec(ref);
  if (m === null)
    throw new UsageError(
      `"${ref}" is not a FHIR resource reference of the form Type/ID (e.g. DocumentReference/d70d8f3e-990a-4bc0-b11f-c87349f5d4eb)`,
    );
  return { type: m[1]!, id: m[2]! };
}

/** Reads one FHIR resource; its `resourceType` must be the one asked for. */
export async function readFhirResource(t: FhirTarget, type: string, id: string): Promise<Record<string, unknown>> {
  const url = `${t.healthcareBase.replace(/\/+$/, "")}/v1/${t.fhirStore}/fhir/${type}/${encodeURIComponent(id)}`;
  const doc = await t.client.json<unknown>("GET", url, {
    headers: { accept: "application/fhir+json" },
    ...(t.signal === undefined ? {} : { signal: t.signal }),
  });
  if (typeof doc !== "object" || doc === null || Array.isArray(doc))
    throw new HcexportError(`${type}/${id}: the FHIR answer is not a JSON object`);
  const got = (doc as { resourceType?: unknown }).resourceType;
  if (got !== type)
    throw new HcexportError(
      `${type}/${id}: the server answered a ${typeof got === "string" ? got : "resource without resourceType"}`,
    );
  return doc as Record<string, unknown>;
}

/** Every attachment of a resource (DocumentReference.content[].attachment, Media.content, …), depth-first. */
export function attachmentsOf(resource: unknown): Attachment[] {
  const out: Attachment[] = [];
  const visit = (node: unknown, depth: number, key: string) => {
    if (depth > 8 || typeof node !== "object" || node === null) return;
    if (Array.isArray(node)) {
      for (const item of node.slice(0, 1000)) visit(item, depth + 1, key);
      return;
    }
    const o = node as Record<string, unknown>;
    if (
      (key === "attachment" || key === "content") &&
      (typeof o["url"] === "string" || typeof o["data"] === "string")
    ) {
      out.push({
        ...(typeof o["url"] === "string" ? { url: o["url"] } : {}),
        ...(typeof o["data"] === "string" ? { data: o["data"] } : {}),
        ...(typeof o["title"] === "string" ? { title: o["title"] } : {}),
        ...(typeof o["contentType"] === "string" ? { contentType: o["contentType"] } : {}),
      });
      return;
    }
    for (const [k, v] of Object.entries(o)) visit(v, depth + 1, k);
  };
  visit(resource, 0, "");
  return out;
}

/**
 * Writes an attachment atomically into `dest` under its title (when the title is a plain file
 * name) or `fallbackName`. Google credentials go only where `mayCarryGoogleCredentials` allows
 * (https Google hosts, the exact origin of a configured endpoint): the client's auth asks it for
 * every URL, so any other attachment host gets an anonymous request. A SIIM annotations CSV is summarised.
 */
export async function downloadAttachment(
  t: FhirTarget,
  att: Attachment,
  dest: string,
  fallbackName: string,
): Promise<FetchedAttachment> {
  const name =
    att.title !== undefined && /^[\w][\w.-]{0,99}$/.test(att.title) && !att.title.includes("..")
      ? att.title
      : fallbackName;
  const wantsSummary = (att.contentType ?? "").startsWith("text/csv") || name.endsWith(".csv");
  const chunks: Buffer[] = [];
  const keep = async function* (body: AsyncIterable<Buffer>) {
    for await (const chunk of body) {
      if (wantsSummary) chunks.push(chunk);
      yield chunk;
    }
  };
  const finish = (written: { path: string; bytes: number }, url: string): FetchedAttachment => {
    const text = wantsSummary ? Buffer.concat(chunks).toString("utf8") : "";
    const siim = /^\uFEFF?ImageId\s*,\s*EncodedPixels/.test(text);
    return { path: written.path, bytes: written.bytes, url, ...(siim ? { summary: summarizeAnnotations(text) } : {}) };
  };
  if (att.url === undefined) {
    if (att.data === undefined) throw new HcexportError("the attachment has neither url nor data");
    const bytes = Buffer.from(att.data, "base64");
    return finish(
      await writeFileAtomic(
        dest,
        name,
        keep(
          (async function* () {
            yield bytes;
          })(),
        ),
      ),
      "data:",
    );
  }
  // The client's auth decides per URL whether credentials go along (src/gcp/credential-destination.ts).
  const target = downloadTarget(att.url, t);
  const res = await t.client.stream("GET", target, t.signal === undefined ? {} : { signal: t.signal });
  return finish(await writeFileAtomic(dest, name, keep(res.body as AsyncIterable<Buffer>)), att.url);
}

/**
 * Reads the FHIR DocumentReference, downloads its attachment atomically into `dest` and
 * summarises the SIIM CSV.
 */
export async function fetchAnnotations(o: FetchAnnotationsOptions): Promise<FetchedAnnotations> {
  const doc = await readFhirResource(o, "DocumentReference", o.documentReference);
  const att = attachmentsOf(doc)[0];
  if (att === undefined) throw new HcexportError(`DocumentReference/${o.documentReference} has no attachment`);
  const got = await downloadAttachment(o, att, o.dest, "annotations.csv");
  if (got.summary === undefined)
    throw new HcexportError(`${got.path} is not a SIIM annotations CSV (no "ImageId, EncodedPixels" header)`);
  return { ...got, summary: got.summary };
}

/** Where to GET an attachment: `gs://` through the storage endpoint, http(s) URLs as they are. */
function downloadTarget(attachmentUrl: string, t: FhirTarget): string {
  const gs = /^gs:\/\/([^/]+)\/(.+)$/.exec(attachmentUrl);
  if (gs !== null)
    return `${t.storageBase.replace(/\/+$/, "")}/download/storage/v1/b/${encodeURIComponent(gs[1]!)}/o/${encodeURIComponent(gs[2]!)}?alt=media`;
  let u: URL;
  try {
    u = new URL(attachmentUrl);
  } catch {
    throw new HcexportError(`the attachment URL ${JSON.stringify(attachmentUrl.slice(0, 200))} is not a URL`);
  }
  if (u.protocol !== "https:" && u.protocol !== "http:")
    throw new HcexportError(`unsupported attachment URL scheme: ${u.protocol}`);
  return attachmentUrl;
}
