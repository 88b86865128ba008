import type { IncomingMessage, ServerResponse } from "node:http";
import { ApiError, decodeSegment, readJson, sendJson } from "../http-util.ts";
import type { ObjectStore, RequestContext } from "../types.ts";
import { objectResource } from "./resources.ts";

/** `/o/SRC/copyTo/b/DB/o/DST` and `/o/SRC/rewriteTo/b/DB/o/DST` (names percent-encoded, `/` as `%2F`). */
export const COPY_ROUTE = /^\/([^/]+)\/(copyTo|rewriteTo)\/b\/([^/]+)\/o\/([^/]+)$/;

/**
 * objects.copy and objects.rewrite. The emulator copies in one step, so a rewrite is always
 * `done: true` with no rewriteToken. Body fields (contentType, metadata) override the source's.
 */
export async function copyObject(
  store: ObjectStore,
  bucket: string,
  match: RegExpExecArray,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  ctx: RequestContext,
): Promise<boolean> {
  const [, rawSrc, op, rawDstBucket, rawDst] = match;
  const src = decodeSegment(rawSrc!);
  const dstBucket = decodeSegment(rawDstBucket!);
  const dst = decodeSegment(rawDst!);
  const body = await readJson(req);
  const q = url.searchParams;
  const source = store.getObject(bucket, src, q.get("sourceGeneration") ?? undefined);
  const data = source === undefined ? undefined : store.readObject(bucket, src, source.generation);
  if (source === undefined || data === undefined)
    throw new ApiError(404, "notFound", `No such object: ${bucket}/${src}`);
  if (store.getBucket(dstBucket) === undefined)
    throw new ApiError(404, "notFound", "The destination bucket does not exist.");
  const want = q.get("ifGenerationMatch");
  if (want !== null) {
    const current = store.getObject(dstBucket, dst);
    if (want === "0" ? current !== undefined : current?.generation !== want)
      throw new ApiError(412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
  }
  const contentType = typeof body["contentType"] === "string" ? body["contentType"] : source.contentType;
  const metadata =
    typeof body["metadata"] === "object" && body["metadata"] !== null
      ? Object.fromEntries(Object.entries(body["metadata"]).map(([k, v]) => [k, String(v)]))
      : source.metadata;
  const contentEncoding =
    typeof body["contentEncoding"] === "string" ? body["contentEncoding"] : source.contentEncoding;
  const meta = store.putObject(
    dstBucket,
    dst,
    data,
    contentType,
    metadata === undefined ? undefined : { ...metadata },
    contentEncoding === undefined ? undefined : { contentEncoding },
  );
  const resource = objectResource(meta, ctx.baseUrl);
  if (op === "copyTo") sendJson(res, 200, resource);
  else
    sendJson(res, 200, {
      kind: "storage#rewriteResponse",
      totalBytesRewritten: String(meta.size),
      objectSize: String(meta.size),
      done: true,
      resource,
    });
  return true;
}
