import { HcexportError, HttpError, IntegrityError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import type { Lease } from "../core/stage-pool.ts";
import { NotWhole, type IntoTarget } from "../net/receive-into.ts";
import { cheapestDigest, expectedDigests } from "./digest.ts";
import { IN_MEMORY, land, landLease, type LandContext } from "./land.ts";
import { MultipartError, MultipartParser, parseContentType, type MultipartEvent } from "./multipart.ts";
import type { PullEvent } from "./pull.ts";
import type { InstanceRef } from "./search.ts";

/**
 * One WADO-RS request and its answer: a single instance, or a series/study as multipart/related,
 * the Accept negotiated once per run (servers that speak only multipart), small single-part
 * answers received whole into a stager's buffer. Each instance in it lands through land.ts.
 */

/** The retrieve side of a DICOMweb service: a GET relative to its base, streamed. */
export interface WadoPort {
  retrieve(
    path: string,
    accept: string,
    signal?: AbortSignal,
  ): Promise<{
    readonly status: number;
    readonly headers: Record<string, string | string[] | undefined>;
    readonly body: AsyncIterable<Uint8Array> & { destroy?: () => void };
  }>;
  /**
   * The same GET, its body copied straight into the buffer `into` chooses from the answer's
   * headers (`dispatchInto`: no body stream); rejects with `NotWhole` when it chooses none.
   * Optional: without it every answer is read from `retrieve`.
   */
  retrieveInto?(
    path: string,
    accept: string,
    into: IntoTarget,
    signal?: AbortSignal,
  ): Promise<{ readonly status: number; readonly headers: Record<string, string | string[] | undefined> }>;
}

export const ACCEPT_SINGLE = "application/dicom; transfer-syntax=*";
export const ACCEPT_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*';

/** What a retrieval needs: the service, how it answers, and where its instances land (land.ts). */
export interface RetrieveContext extends LandContext {
  readonly source: WadoPort;
  /** What single-instance requests ask for; switches to multipart once if the server refuses it. */
  accept: string;
  /**
   * Single-instance answers are received whole through `source.retrieveInto` until one is not a
   * single body of a known size that fits in memory (then, for the rest of the run, as streams).
   */
  whole?: boolean;
  readonly emit: EventSink<PullEvent>;
  readonly signal?: AbortSignal;
}

export async function retrieveInstance(ctx: RetrieveContext, ref: InstanceRef): Promise<void> {
  const wadoPath = `studies/${ref.study}/series/${ref.series}/instances/${ref.instance}`;
  if (ctx.source.retrieveInto !== undefined && ctx.whole !== false && ctx.accept === ACCEPT_SINGLE) {
    if (await retrieveWhole(ctx, ref, wadoPath)) return;
  }
  let res;
  const accept = ctx.accept;
  try {
    ctx.summary.retrieveRequests++;
    res = await ctx.source.retrieve(wadoPath, accept, ctx.signal);
  } catch (err) {
    // Servers that only speak multipart (the standard's form; e.g. Orthanc) refuse the
    // single-part Accept with 400 or 406: switch once for the whole run, and ask again.
    if (refusesSingle(err) && accept === ACCEPT_SINGLE) {
      negotiateMultipart(ctx, err);
      ctx.summary.retrieveRequests++;
      res = await ctx.source.retrieve(wadoPath, ACCEPT_MULTIPART, ctx.signal);
    } else throw err;
  }
  try {
    const ct = parseContentType(headerOf(res.headers, "content-type"));
    if (ct.type === "multipart/related") {
      let got = 0;
      await eachPart(res.body, ct.params["boundary"], async (headers, body) => {
        if (++got > 1) throw new IntegrityError(`${wadoPath}: the server sent more than one instance`);
        await land(ctx, body, headers, { expect: ref });
      });
      if (got === 0) throw new IntegrityError(`${wadoPath}: the multipart answer holds no instance`);
    } else {
      if (ct.type !== "application/dicom" && ct.type !== "application/octet-stream")
        throw new HcexportError(
          `${wadoPath}: the server answered ${ct.type || "without a Content-Type"}, not application/dicom`,
        );
      const length = Number(headerOf(res.headers, "content-length"));
      await land(ctx, res.body, res.headers, { expect: ref, ...(Number.isFinite(length) ? { length } : {}) });
    }
  } catch (err) {
    res.body.destroy?.();
    throw err;
  }
}

/**
 * `retrieveInstance` for a single-part answer of known length that fits in memory: the body is
 * copied into a stager's buffer straight from the HTTP client's callbacks (as the mirror receives
 * its small objects), then landed like `landWhole`. False when the request must be made the
 * streaming way (its body not read): the instance is too big to hold in memory, the answer is not
 * one body of a known length (multipart, no Content-Length: from then on every instance streams),
 * or the server refused the single-part Accept (negotiated as there).
 */
async function retrieveWhole(ctx: RetrieveContext, ref: InstanceRef, wadoPath: string): Promise<boolean> {
  let lease: Lease | undefined;
  let tooBig = false;
  let headers: Record<string, string | string[] | undefined>;
  try {
    ctx.summary.retrieveRequests++;
    ({ headers } = await ctx.source.retrieveInto!(
      wadoPath,
      ACCEPT_SINGLE,
      (_status, h) => {
        const ct = parseContentType(headerOf(h, "content-type")).type;
        const length = Number(headerOf(h, "content-length"));
        if (ct !== "application/dicom" && ct !== "application/octet-stream") return undefined;
        if (!Number.isSafeInteger(length) || length <= 0) return undefined;
        if (length > IN_MEMORY) {
          tooBig = true;
          return undefined;
        }
        lease = ctx.stager.lease(length);
        return lease.bytes;
      },
      ctx.signal,
    ));
  } catch (err) {
    lease?.release();
    if (err instanceof NotWhole) {
      // A big instance streams, and the next one is asked for whole again; any other answer
      // (multipart, no Content-Length) is how this server answers: stream from now on.
      if (!tooBig) ctx.whole = false;
      return false;
    }
    if (!refusesSingle(err)) throw err;
    negotiateMultipart(ctx, err); // and the streaming way asks again, for multipart
    return false;
  }
  try {
    await landLease(ctx, lease!, cheapestDigest(expectedDigests(headers))[0], {
      expect: ref,
      length: lease!.bytes.byteLength,
    });
    return true;
  } finally {
    lease!.release();
  }
}

/**
 * Servers that only speak multipart (the standard's form; e.g. Orthanc) refuse the single-part
 * Accept with 400 or 406.
 */
function refusesSingle(err: unknown): err is HttpError {
  return err instanceof HttpError && (err.status === 406 || err.status === 400);
}

/** Switches the run's single-instance requests to multipart, once, and says why. */
function negotiateMultipart(ctx: RetrieveContext, err: HttpError): void {
  if (ctx.accept !== ACCEPT_SINGLE) return;
  ctx.accept = ACCEPT_MULTIPART;
  ctx.emit({
    kind: "dicomweb.negotiated",
    accept: ACCEPT_MULTIPART,
    reason: `the server answered ${err.status} to "${ACCEPT_SINGLE}"`,
  });
}

/** One multipart request for a series or a study; writes the parts that are missing on disk. */
export async function retrieveGroup(
  ctx: RetrieveContext,
  wadoPath: string,
  scope: { study: string; series?: string },
  missing: Map<string, InstanceRef>,
): Promise<void> {
  ctx.summary.retrieveRequests++;
  const res = await ctx.source.retrieve(wadoPath, ACCEPT_MULTIPART, ctx.signal);
  try {
    const ct = parseContentType(headerOf(res.headers, "content-type"));
    if (ct.type !== "multipart/related")
      throw new HcexportError(
        `${wadoPath}: expected multipart/related, the server answered ${ct.type || "without a Content-Type"}`,
      );
    await eachPart(res.body, ct.params["boundary"], async (headers, body) => {
      const written = await land(ctx, body, headers, {
        scope,
        isWanted: (uids) => missing.has(uids.sopInstanceUid ?? ""),
      });
      if (written !== undefined) missing.delete(written);
    });
  } catch (err) {
    res.body.destroy?.();
    throw err;
  }
  if (missing.size > 0)
    throw new IntegrityError(`${wadoPath}: ${missing.size} listed instance(s) missing from the server's answer`);
}

export function headerOf(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Runs `onPart` for each part of a multipart body, streaming; a malformed or cut body is an IntegrityError (retried). */
export async function eachPart(
  body: AsyncIterable<Uint8Array>,
  boundary: string | undefined,
  onPart: (headers: Readonly<Record<string, string>>, body: AsyncIterable<Buffer>) => Promise<void>,
): Promise<void> {
  if (boundary === undefined) throw new HcexportError("multipart answer without a boundary parameter");
  const events = multipartEvents(body, boundary)[Symbol.asyncIterator]();
  for (;;) {
    const next = await events.next();
    if (next.done === true) return;
    if (next.value.kind !== "part") throw new IntegrityError("malformed multipart body");
    let ended = false;
    const partBody: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const n = await events.next();
          if (n.done === true) throw new IntegrityError("the multipart body ended inside a part");
          if (n.value.kind === "end") {
            ended = true;
            return;
          }
          if (n.value.kind === "data") yield n.value.chunk;
        }
      },
    };
    await onPart(next.value.headers, partBody);
    // A part skipped or only partly read: consume the rest of it.
    if (!ended) for await (const _ of partBody) void _;
  }
}

async function* multipartEvents(body: AsyncIterable<Uint8Array>, boundary: string): AsyncGenerator<MultipartEvent> {
  try {
    const parser = new MultipartParser(boundary);
    for await (const chunk of body) yield* parser.push(chunk);
    parser.finish();
  } catch (err) {
    if (err instanceof MultipartError) throw new IntegrityError(err.message);
    throw err;
  }
}
