import { gunzipSync } from "node:zlib";
import type { IncomingMessage, ServerResponse } from "node:http";
import { compareUtf8 } from "../../core/utf8-order.ts";
import { ApiError, decodeSegment, sendJson } from "../http-util.ts";
import { sendMedia } from "../media.ts";
import type { ObjectMeta, ObjectStore, RequestContext } from "../types.ts";
import { COPY_ROUTE, copyObject } from "./copy.ts";
import { parseFieldsMask, type FieldsMask } from "./fields-mask.ts";
import { mediaHeaders, objectResource } from "./resources.ts";

const MAX_PAGE = 1000;
/** Names fetched from the store at a time while building a page. */
const BATCH = 256;

/** `/o`, `/o/NAME` (metadata, `?alt=media`, DELETE) and the `/download/...` media path. */
export function handleObjects(
  store: ObjectStore,
  bucket: string,
  tail: string,
  mediaPath: boolean,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RequestContext,
): boolean | Promise<boolean> {
  if (tail === "" || tail === "/") {
    if (mediaPath || req.method !== "GET") return false;
    listObjects(store, bucket, res, url, ctx);
    return true;
  }
  if (!tail.startsWith("/")) return false;
  const copy = req.method === "POST" && !mediaPath ? COPY_ROUTE.exec(tail) : null;
  if (copy !== null) return copyObject(store, bucket, copy, req, res, url, ctx);
  const name = decodeSegment(tail.slice(1));
  const generation = url.searchParams.get("generation") ?? undefined;
  if (req.method === "DELETE" && !mediaPath) {
    const meta = store.getObject(bucket, name, generation);
    if (meta === undefined) throw notFound(bucket, name);
    checkGenerationMatch(meta, url);
    store.deleteObject(bucket, name);
    res.writeHead(204).end();
    return true;
  }
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  const meta = store.getObject(bucket, name, generation);
  if (meta === undefined) throw notFound(bucket, name);
  checkGenerationMatch(meta, url);
  if (mediaPath || url.searchParams.get("alt") === "media") {
    const data = store.readObject(bucket, name, meta.generation);
    if (data === undefined) throw notFound(bucket, name);
    if (meta.contentEncoding === "gzip" && !acceptsGzip(req.headers["accept-encoding"])) {
      // Decompressive transcoding, as GCS does it: the client did not accept gzip, so it gets the
      // decompressed bytes (no Content-Length, Range ignored); size and hashes in the headers stay
      // those of the stored gzip bytes, and x-goog-stored-content-encoding says so.
      sendTranscoded(req, res, data, mediaHeaders(meta));
      return true;
    }
    sendMedia(
      req,
      res,
      data,
      meta.contentEncoding === undefined
        ? mediaHeaders(meta)
        : { ...mediaHeaders(meta), "content-encoding": meta.contentEncoding },
      ctx,
    );
    return true;
  }
  sendJson(res, 200, objectResource(meta, ctx.baseUrl, fieldsMask(url)));
  return true;
}

function listObjects(store: ObjectStore, bucket: string, res: ServerResponse, url: URL, ctx: RequestContext): void {
  const q = url.searchParams;
  const prefix = q.get("prefix") ?? "";
  const delimiter = q.get("delimiter") ?? "";
  const includeTrailing = q.get("includeTrailingDelimiter") === "true";
  const maxResults = Math.min(MAX_PAGE, Math.max(1, Number(q.get("maxResults") ?? MAX_PAGE) || MAX_PAGE));
  const startOffset = q.get("startOffset") ?? undefined;
  const endOffset = q.get("endOffset") ?? undefined;
  const token = q.get("pageToken");
  let cursor = token === null || token === "" ? undefined : decodeToken(token);
  if (cursor === undefined && startOffset !== undefined && compareUtf8(startOffset, prefix) > 0)
    cursor = { after: startOffset, inclusive: true };

  const items: ObjectMeta[] = [];
  const prefixes: string[] = [];
  let more = false;
  // While set, names under this prefix are already represented by it and are skipped; the cursor
  // already points past it, so the next batch jumps over the rest of the group.
  let skipPrefix: string | undefined;
  outer: for (;;) {
    const batch = store.listObjects(bucket, {
      prefix,
      ...(cursor === undefined ? {} : { startAfter: cursor.inclusive ? beforeKey(cursor.after) : cursor.after }),
      limit: BATCH,
    });
    for (const meta of batch) {
      if (endOffset !== undefined && compareUtf8(meta.name, endOffset) >= 0) break outer;
      if (skipPrefix !== undefined && meta.name.startsWith(skipPrefix)) continue;
      skipPrefix = undefined;
      if (items.length + prefixes.length >= maxResults) {
        more = true;
        break outer;
      }
      const rest = meta.name.slice(prefix.length);
      const cut = delimiter === "" ? -1 : rest.indexOf(delimiter);
      if (cut >= 0) {
        const p = prefix + rest.slice(0, cut + delimiter.length);
        prefixes.push(p);
        if (includeTrailing && meta.name === p) items.push(meta);
        skipPrefix = p;
        cursor = { after: `${p}\u{10FFFF}`, inclusive: false };
        continue;
      }
      items.push(meta);
      cursor = { after: meta.name, inclusive: false };
    }
    if (batch.length < BATCH) break;
  }
  // Mask while building: a listing page is 1000 objects, and clients usually want 5 fields of each.
  const mask = fieldsMask(url);
  const itemsMask = mask?.get("items");
  const want = (key: string) => mask === undefined || mask.get("*") === true || mask.has(key);
  const body: Record<string, unknown> = {};
  if (want("kind")) body["kind"] = "storage#objects";
  if (more && cursor !== undefined && want("nextPageToken")) body["nextPageToken"] = encodeToken(cursor);
  if (prefixes.length > 0 && want("prefixes")) body["prefixes"] = prefixes;
  if (items.length > 0 && want("items"))
    body["items"] = items.map((m) => objectResource(m, ctx.baseUrl, itemsMask === true ? undefined : itemsMask));
  sendJson(res, 200, body);
}

/** A key just before `k` for an inclusive start: the store's `startAfter` is exclusive. */
function beforeKey(k: string): string {
  if (k === "") return "";
  const lastCode = k.charCodeAt(k.length - 1);
  return lastCode === 0 ? k.slice(0, -1) : `${k.slice(0, -1)}${String.fromCharCode(lastCode - 1)}\u{10FFFF}`;
}

function encodeToken(c: { after: string; inclusive: boolean }): string {
  return Buffer.from(JSON.stringify(c)).toString("base64url");
}

function decodeToken(t: string): { after: string; inclusive: boolean } {
  try {
    const v = JSON.parse(Buffer.from(t, "base64url").toString("utf8")) as { after?: unknown; inclusive?: unknown };
    if (typeof v.after === "string") return { after: v.after, inclusive: v.inclusive === true };
  } catch {
    // fall through
  }
  throw new ApiError(400, "invalid", "Invalid pageToken");
}

/** The request's `fields` mask, if any (a malformed one is a 400). */
function fieldsMask(url: URL): FieldsMask | undefined {
  const fields = url.searchParams.get("fields");
  if (fields === null || fields === "") return undefined;
  try {
    return parseFieldsMask(fields);
  } catch (err) {
    throw new ApiError(400, "invalidParameter", err instanceof Error ? err.message : "invalid fields");
  }
}

function checkGenerationMatch(meta: ObjectMeta, url: URL): void {
  const want = url.searchParams.get("ifGenerationMatch");
  if (want !== null && want !== meta.generation)
    throw new ApiError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
  const notWant = url.searchParams.get("ifGenerationNotMatch");
  if (notWant !== null && notWant === meta.generation) throw new ApiError(304, "notModified", "Not modified");
}

function notFound(bucket: string, name: string): ApiError {
  return new ApiError(404, "notFound", `No such object: ${bucket}/${name}`);
}

/** Whether an Accept-Encoding header admits gzip (`gzip`, `gzip;q=0.5`, `*`; not `gzip;q=0`). */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  const value = Array.isArray(header) ? header.join(",") : (header ?? "");
  return value.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding !== "gzip" && coding !== "x-gzip" && coding !== "*") return false;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

function sendTranscoded(
  req: IncomingMessage,
  res: ServerResponse,
  stored: Buffer,
  headers: Record<string, string>,
): void {
  let body: Buffer;
  try {
    body = gunzipSync(stored);
  } catch {
    // Stored bytes that are not gzip although the metadata says so: GCS serves them as stored.
    body = stored;
  }
  res.writeHead(200, { ...headers, "transfer-encoding": "chunked", warning: "214 UploadServer gunzipped" });
  if (req.method === "HEAD") res.end();
  else res.end(body);
}
