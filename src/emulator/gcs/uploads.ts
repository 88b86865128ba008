import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, decodeSegment, readBody, sendJson } from "../http-util.ts";
import type { ObjectMeta, ObjectStore, RequestContext } from "../types.ts";
import { objectResource } from "./resources.ts";

interface Session {
  bucket: string;
  name: string;
  contentType: string;
  contentEncoding?: string | undefined;
  metadata: Record<string, string> | undefined;
  chunks: Buffer[];
  received: number;
  ifGenerationMatch: string | null;
}

const sessions = new Map<string, Session>();
/** Finished sessions: a client that lost the final response asks again and must get the object, not a 404. */
const completed = new Map<string, ObjectMeta>();
const MAX_COMPLETED = 10_000;

/** `/upload/storage/v1/b/B/o` with uploadType media, multipart or resumable (+ PUT chunks). */
export async function handleUpload(
  store: ObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RequestContext,
): Promise<void> {
  const m = /^(?:\/resumable)?\/upload\/storage\/v1\/b\/([^/]+)\/o\/?$/.exec(url.pathname);
  if (m === null) throw new ApiError(404, "notFound", `no upload endpoint at ${url.pathname}`);
  const bucket = decodeSegment(m[1]!);
  if (store.getBucket(bucket) === undefined)
    throw new ApiError(404, "notFound", "The specified bucket does not exist.");
  const uploadId = url.searchParams.get("upload_id");
  if (uploadId !== null) return resumeUpload(store, uploadId, req, res, ctx);
  const type = url.searchParams.get("uploadType") ?? "media";
  if (req.method !== "POST")
    throw new ApiError(405, "methodNotAllowed", `${req.method} is not allowed without upload_id`);
  if (type === "media") {
    const name = url.searchParams.get("name");
    if (name === null || name === "") throw new ApiError(400, "required", "Required parameter: name");
    const data = await readBody(req);
    finish(
      store,
      {
        bucket,
        name,
        contentType: req.headers["content-type"] ?? "application/octet-stream",
        contentEncoding: url.searchParams.get("contentEncoding") ?? undefined,
        metadata: undefined,
        ifGenerationMatch: url.searchParams.get("ifGenerationMatch"),
      },
      data,
      res,
      ctx,
    );
    return;
  }
  if (type === "multipart") {
    const { meta, media, mediaType } = parseMultipart(req.headers["content-type"] ?? "", await readBody(req));
    const name = typeof meta["name"] === "string" ? meta["name"] : url.searchParams.get("name");
    if (name === null || name === "") throw new ApiError(400, "required", "Required field: name");
    finish(
      store,
      {
        bucket,
        name,
        contentType: typeof meta["contentType"] === "string" ? meta["contentType"] : mediaType,
        contentEncoding: stringOf(meta["contentEncoding"]),
        metadata: stringMap(meta["metadata"]),
        ifGenerationMatch: url.searchParams.get("ifGenerationMatch"),
      },
      media,
      res,
      ctx,
    );
    return;
  }
  if (type === "resumable") {
    const raw = await readBody(req, 1024 * 1024);
    let meta: Record<string, unknown> = {};
    if (raw.length > 0) {
      try {
        meta = JSON.parse(raw.toString("utf8")) as Record<string, unknown>;
      } catch {
        throw new ApiError(400, "parseError", "Invalid JSON payload received.");
      }
    }
    const name = typeof meta["name"] === "string" ? meta["name"] : url.searchParams.get("name");
    if (name === null || name === "") throw new ApiError(400, "required", "Required field: name");
    const id = randomBytes(12).toString("hex");
    sessions.set(id, {
      bucket,
      name,
      contentType:
        typeof meta["contentType"] === "string"
          ? meta["contentType"]
          : String(req.headers["x-upload-content-type"] ?? "application/octet-stream"),
      contentEncoding: stringOf(meta["contentEncoding"]),
      metadata: stringMap(meta["metadata"]),
      chunks: [],
      received: 0,
      ifGenerationMatch: url.searchParams.get("ifGenerationMatch"),
    });
    const location = `${ctx.baseUrl}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&upload_id=${id}`;
    res.writeHead(200, { location, "x-guploader-uploadid": id, "content-length": 0 });
    res.end();
    return;
  }
  throw new ApiError(400, "invalid", `unsupported uploadType "${type}"`);
}

async function resumeUpload(
  store: ObjectStore,
  id: string,
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
): Promise<void> {
  const s = sessions.get(id);
  const done = completed.get(id);
  if (s === undefined && done !== undefined) {
    req.resume();
    sendJson(res, 200, objectResource(done, ctx.baseUrl));
    return;
  }
  if (s === undefined) throw new ApiError(404, "notFound", "No such upload session (it expired or was cancelled).");
  if (req.method === "DELETE") {
    sessions.delete(id);
    res.writeHead(499).end();
    return;
  }
  if (req.method !== "PUT" && req.method !== "POST")
    throw new ApiError(405, "methodNotAllowed", "use PUT to send upload data");
  const data = await readBody(req);
  const range = req.headers["content-range"];
  // `bytes a-b/total`, `bytes */total` (status query or final empty chunk), `bytes a-b/*` (more to come)
  const m = range === undefined ? null : /^bytes (?:(\d+)-(\d+|\*)|\*)\/(\d+|\*)$/.exec(range);
  if (range !== undefined && m === null) throw new ApiError(400, "invalid", `bad Content-Range "${range}"`);
  if (m !== null && m[1] !== undefined) {
    const start = Number(m[1]);
    if (start > s.received)
      throw new ApiError(400, "invalid", `chunk starts at ${start}, but only ${s.received} bytes were received`);
    const skip = s.received - start; // a resent overlap
    if (skip < data.length) {
      s.chunks.push(data.subarray(skip));
      s.received += data.length - skip;
    }
  } else if (data.length > 0) {
    s.chunks.push(data);
    s.received += data.length;
  }
  // `bytes A-*/*` (the SDK's single-request streaming mode): this body is the rest of the object.
  const total = m === null || m[2] === "*" ? s.received : m[3] === "*" ? undefined : Number(m[3]);
  if (total !== undefined && s.received >= total) {
    sessions.delete(id);
    const meta = finish(store, s, Buffer.concat(s.chunks), res, ctx);
    if (completed.size >= MAX_COMPLETED) completed.delete(completed.keys().next().value!);
    completed.set(id, meta);
    return;
  }
  const headers: Record<string, string | number> = { "content-length": 0, "x-http-status-code-override": "308" };
  if (s.received > 0) headers["range"] = `bytes=0-${s.received - 1}`;
  res.writeHead(308, headers);
  res.end();
}

function finish(
  store: ObjectStore,
  s: Pick<Session, "bucket" | "name" | "contentType" | "contentEncoding" | "metadata" | "ifGenerationMatch">,
  data: Buffer,
  res: ServerResponse,
  ctx: RequestContext,
): ObjectMeta {
  if (s.ifGenerationMatch !== null) {
    const current = store.getObject(s.bucket, s.name);
    const ok = s.ifGenerationMatch === "0" ? current === undefined : current?.generation === s.ifGenerationMatch;
    if (!ok)
      throw new ApiError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
  }
  const meta = store.putObject(
    s.bucket,
    s.name,
    data,
    s.contentType,
    s.metadata,
    s.contentEncoding === undefined ? undefined : { contentEncoding: s.contentEncoding },
  );
  sendJson(res, 200, objectResource(meta, ctx.baseUrl));
  return meta;
}

function stringOf(v: unknown): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function stringMap(v: unknown): Record<string, string> | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)]));
}

/** Parses a two-part multipart/related upload: JSON metadata, then the media. */
function parseMultipart(
  contentType: string,
  body: Buffer,
): { meta: Record<string, unknown>; media: Buffer; mediaType: string } {
  // gcloud (Python's email package) quotes with ' and ends lines with LF only.
  const b = /boundary=(?:"([^"]+)"|'([^']+)'|([^;\s]+))/i
    .exec(contentType)
    ?.slice(1)
    .find((x) => x !== undefined);
  if (b === undefined) throw new ApiError(400, "invalid", "multipart upload without a boundary");
  const delim = Buffer.from(`--${b}`);
  const parts: Buffer[] = [];
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    const start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === "--") break;
    const next = body.indexOf(delim, start);
    if (next < 0) break;
    parts.push(body.subarray(start, next));
    pos = next;
  }
  if (parts.length < 2) throw new ApiError(400, "invalid", "multipart upload needs a metadata part and a media part");
  const split = (part: Buffer) => {
    const crlf = part.indexOf("\r\n\r\n");
    const lf = part.indexOf("\n\n");
    const useCrlf = crlf >= 0 && (lf < 0 || crlf <= lf);
    const sep = useCrlf ? crlf : lf;
    if (sep < 0) throw new ApiError(400, "invalid", "malformed multipart part");
    const headers = part.subarray(0, sep).toString("utf8");
    let content = part.subarray(sep + (useCrlf ? 4 : 2));
    if (content.subarray(-2).toString() === "\r\n") content = content.subarray(0, -2);
    else if (content.subarray(-1).toString() === "\n") content = content.subarray(0, -1);
    return { headers, content };
  };
  const first = split(parts[0]!);
  const second = split(parts[1]!);
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(first.content.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new ApiError(400, "parseError", "Invalid JSON payload in the multipart metadata part.");
  }
  const mediaType = /content-type:\s*([^\r\n]+)/i.exec(second.headers)?.[1]?.trim() ?? "application/octet-stream";
  return { meta, media: second.content, mediaType };
}
