import { writeFileAtomic } from "../core/atomic-file.ts";
import { HcexportError } from "../core/errors.ts";
import { anonymousAuth, HttpClient } from "../net/http-client.ts";
import { summarizeAnnotations, type AnnotationsSummary } from "./annotations-csv.ts";

export interface FetchAnnotationsOptions {
  /** Authenticated client for the Healthcare API (and its host). */
  readonly client: HttpClient;
  readonly healthcareBase: string;
  readonly storageBase: string;
  readonly fhirStore: string;
  readonly documentReference: string;
  readonly dest: string;
  readonly signal?: AbortSignal;
}

export interface FetchedAnnotations {
  readonly path: string;
  readonly bytes: number;
  readonly url: string;
  readonly summary: AnnotationsSummary;
}

/**
 * Reads the FHIR DocumentReference, downloads its attachment atomically into `dest` (Google
 * credentials only go to Google's own hosts; any other host gets an anonymous request), and
 * summarises the SIIM CSV.
 */
export async function fetchAnnotations(o: FetchAnnotationsOptions): Promise<FetchedAnnotations> {
  const url = `${o.healthcareBase.replace(/\/+$/, "")}/v1/${o.fhirStore}/fhir/DocumentReference/${encodeURIComponent(o.documentReference)}`;
  const doc = await o.client.json<{ resourceType?: unknown; content?: Array<{ attachment?: { url?: unknown; title?: unknown } }> }>("GET", url, {
    headers: { accept: "application/fhir+json" },
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  });
  if (doc?.resourceType !== "DocumentReference") throw new HcexportError(`${url} is not a DocumentReference`);
  const att = doc.content?.find((c) => typeof c.attachment?.url === "string")?.attachment;
  if (att === undefined) throw new HcexportError(`DocumentReference ${o.documentReference} has no attachment URL`);
  const attachmentUrl = String(att.url);
  const title = typeof att.title === "string" && /^[\w.-]{1,100}$/.test(att.title) ? att.title : "annotations.csv";
  const { client, target } = downloadTarget(attachmentUrl, o);
  try {
    const chunks: Buffer[] = [];
    const res = await client.stream("GET", target, o.signal === undefined ? {} : { signal: o.signal });
    const tee = async function* () {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        yield chunk;
      }
    };
    const written = await writeFileAtomic(o.dest, title, tee());
    return { path: written.path, bytes: written.bytes, url: attachmentUrl, summary: summarizeAnnotations(Buffer.concat(chunks).toString("utf8")) };
  } finally {
    if (client !== o.client) await client.close();
  }
}

function downloadTarget(attachmentUrl: string, o: FetchAnnotationsOptions): { client: HttpClient; target: string } {
  const gs = /^gs:\/\/([^/]+)\/(.+)$/.exec(attachmentUrl);
  if (gs !== null) return { client: o.client, target: `${o.storageBase.replace(/\/+$/, "")}/download/storage/v1/b/${gs[1]}/o/${encodeURIComponent(gs[2]!)}?alt=media` };
  const u = new URL(attachmentUrl);
  if (u.protocol !== "https:" && u.protocol !== "http:") throw new HcexportError(`unsupported attachment URL scheme: ${u.protocol}`);
  const trusted = [o.healthcareBase, o.storageBase].some((b) => new URL(b).host === u.host) || u.hostname.endsWith(".googleapis.com");
  return { client: trusted ? o.client : new HttpClient({ auth: anonymousAuth }), target: attachmentUrl };
}
