import { constants, writev as writevCb } from "node:fs";
import { unlink } from "node:fs/promises";
import path from "node:path";
import { fileIdentity, unwritten, type StagedFile } from "../core/atomic-file.ts";
import { tempNameFor } from "../core/temp-names.ts";
import { noteWritten } from "../core/barrier.ts";
import {
  AlignedChunks,
  alignUp,
  createMaybeDirect,
  DIRECT_ALIGN,
  directIo,
  DirectRefused,
  writeDirect,
} from "../core/direct-io.ts";
import { crc32cCombine } from "../core/crc32c-combine.ts";
import { HcexportError, IntegrityError } from "../core/errors.ts";
import { Gate } from "../core/gate.ts";
import { crc32c, crc32cToBase64 } from "../core/hashing.ts";
import { withRetry, type RetryOptions } from "../core/retry.ts";
import { resolveInside } from "../core/safe-path.ts";
import { Writeback } from "../core/writeback.ts";
import type { DownloadContext } from "./download.ts";
import { drain } from "./drain.ts";
import type { RemoteObject, RemoteSource } from "./ports.ts";

/**
 * Big objects as ranged parallel GETs: the object is cut into slices, each a `Range: bytes=a-b`
 * GET pinned to the listed generation, written with positional writes into one temp file
 * preallocated to the size. Each slice is checked as it lands (206, its Content-Range, its exact
 * length) and hashed on its own; the slice CRCs are combined in order into the object's CRC32C
 * and compared with the listed one; the verified temp file then goes to the commit stage (its
 * barrier, the rename, the manifest row), like every other download. A failed slice is retried alone; a combined mismatch (a corrupt slice,
 * which one is unknown) retries the whole object. A server that ignores Range (200, whole body)
 * makes `rangedDownload` return undefined: the caller streams the object instead.
 *
 * Where the file system allows, the temp file is written with direct I/O (core/direct-io.ts):
 * each slice's bytes are copied into page-aligned 1 MiB chunks, hashed there (what is written is
 * what is checked) and written with O_DIRECT, the object's last block padded and the file cut
 * back to its size at the end. No page cache is filled and none is synced later; there is no
 * background writeback to run. A file system that refuses a direct write gets the object again,
 * buffered, and every later one buffered too.
 */

const MiB = 1024 * 1024;

export interface RangedPolicy {
  /** Objects of at least this many bytes are sliced. */
  readonly threshold: number;
  readonly sliceBytes: number;
  /** Slices of one object in flight at once. */
  readonly parallel: number;
  /** Slices of all objects in flight at once (one gate shared by every object using this policy). */
  readonly gate: Gate;
}

export function rangedPolicy(p: Partial<Omit<RangedPolicy, "gate">> & { readonly maxInFlight?: number } = {}) {
  return {
    threshold: p.threshold ?? 32 * MiB,
    sliceBytes: p.sliceBytes ?? 64 * MiB,
    parallel: p.parallel ?? 8,
    gate: new Gate(p.maxInFlight ?? 32),
  } satisfies RangedPolicy;
}

/**
 * 32 MiB threshold, slices of at most 64 MiB (rclone's chunk; s5cmd cuts 50 MiB parts) and at
 * least two per object, 8 per object at once. Fewer, longer streams won on the 2-core bench (3 ×
 * 100 MiB, local cloud in its own process, 4 interleaved rounds each): 0.83–1.08 s with 16 MiB
 * slices (7 per object, 21 streams at once), 0.72–0.86 s with 64 MiB and 0.73–0.85 s with halves
 * of 50 MiB; 16 MiB slices two at a time 0.75–0.83 s, or eight in flight across objects 0.78–0.87
 * s. One thread receives every stream, and each one more costs it socket buffers and wake-ups,
 * where loopback never caps a single stream; on a real link, where one stream is capped well
 * below the line, an object of 1 GiB still gets 8 streams, one of 100 MiB two. 32 slices in flight
 * across objects: beside the mirror's default 32 tasks on a pool of 64 connections, big objects
 * never take every connection from the small ones.
 */
export const DEFAULT_RANGED: RangedPolicy = rangedPolicy();

/**
 * The slice size for an object of `size` bytes: the policy's, but no more than half the object
 * (rounded up to a whole MiB), so every sliced object has at least two slices in flight.
 */
export function sliceBytesFor(policy: Pick<RangedPolicy, "sliceBytes">, size: number): number {
  return Math.min(policy.sliceBytes, Math.ceil(size / 2 / MiB) * MiB);
}

/** One slice: bytes `start`…`end` (inclusive). */
export interface Slice {
  readonly start: number;
  readonly end: number;
}

/** `size` bytes cut into slices of `sliceBytes` (the last one shorter), in order. */
export function planSlices(size: number, sliceBytes: number): Slice[] {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad size ${size}`);
  if (!Number.isSafeInteger(sliceBytes) || sliceBytes < 1) throw new RangeError(`bad slice size ${sliceBytes}`);
  const slices: Slice[] = [];
  for (let start = 0; start < size; start += sliceBytes)
    slices.push({ start, end: Math.min(size, start + sliceBytes) - 1 });
  return slices;
}

/**
 * Whether `obj` goes through ranged GETs: big enough for slices to pay, a CRC32C to verify the
 * combination against (MD5 cannot be combined), the source can read ranges, and stored as is
 * (GCS ignores Range when it transcodes gzip).
 */
export function wantsRanged(
  policy: RangedPolicy | false | undefined,
  source: RemoteSource,
  obj: RemoteObject,
): policy is RangedPolicy {
  return (
    policy !== false &&
    policy !== undefined &&
    source.openRange !== undefined &&
    obj.size >= policy.threshold &&
    sliceBytesFor(policy, obj.size) < obj.size &&
    obj.crc32c !== undefined &&
    obj.contentEncoding === undefined
  );
}

/** The server answered a Range with the whole object (200): slicing is off for this object. */
class RangeIgnored extends HcexportError {}

/** The slices' combined CRC32C is not the listed one: some slice was corrupt; all are fetched again. */
class CombinedMismatch extends IntegrityError {}

/**
 * Downloads `obj` to `dest/rel` in slices (see the module comment); undefined when the server
 * ignores Range (nothing was written, the caller streams the object). `segments` is `rel` checked.
 */
export async function rangedDownload(
  ctx: DownloadContext,
  policy: RangedPolicy,
  obj: RemoteObject,
  rel: string,
  segments: readonly string[],
  signal: AbortSignal | undefined,
): Promise<StagedFile | undefined> {
  const retry = (s: AbortSignal | undefined): Omit<RetryOptions, "isRetryable"> => ({
    clock: ctx.clock,
    ...(ctx.retry === undefined ? {} : { policy: ctx.retry }),
    ...(s === undefined ? {} : { signal: s }),
    ...(ctx.onRetry === undefined ? {} : { onRetry: ctx.onRetry }),
  });
  const run = () =>
    withRetry(() => attempt(ctx, policy, obj, rel, segments, signal, retry), {
      ...retry(signal),
      // Slices retry themselves; only a combined mismatch is worth fetching every slice again.
      isRetryable: (err) => err instanceof CombinedMismatch,
    });
  try {
    return await run().catch((err: unknown) => {
      if (!(err instanceof DirectRefused)) throw err;
      // The file system took the flag but not the write: this object again, buffered, and every later one.
      directIo.disable();
      return run();
    });
  } catch (err) {
    if (err instanceof RangeIgnored) return undefined;
    throw err;
  }
}

async function attempt(
  ctx: DownloadContext,
  policy: RangedPolicy,
  obj: RemoteObject,
  rel: string,
  segments: readonly string[],
  signal: AbortSignal | undefined,
  retry: (s: AbortSignal | undefined) => Omit<RetryOptions, "isRetryable">,
): Promise<StagedFile> {
  const target = resolveInside(ctx.dest, rel);
  const dir = await ctx.guard.ensure(segments.slice(0, -1), obj.name);
  const temp = path.join(dir, tempNameFor(path.basename(target)));
  const sliceBytes = sliceBytesFor(policy, obj.size);
  const { handle: fh, direct } = await createMaybeDirect(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o644,
    // Every slice but the last starts and ends on a block: its writes are aligned.
    directIo.on && sliceBytes % DIRECT_ALIGN === 0,
  );
  // One slice failing for good stops its siblings at once (no bytes fetched for a lost cause).
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal?.reason);
  if (signal?.aborted === true) onAbort();
  else signal?.addEventListener("abort", onAbort, { once: true });
  let staged = false;
  const writeback = ctx.durable === false || direct ? undefined : new Writeback(fh.fd);
  try {
    await fh.truncate(obj.size);
    const slices = planSlices(obj.size, sliceBytes);
    const sinkAt = (position: number) =>
      direct ? directSink(fh.fd, position) : bufferedSink(fh.fd, position, writeback);
    const crcs = new Array<number>(slices.length);
    let next = 0;
    const worker = async () => {
      while (next < slices.length) {
        const i = next++;
        const slice = slices[i]!;
        crcs[i] = await withRetry(
          () => policy.gate.run(() => fetchSlice(ctx, obj, slice, sinkAt, ac.signal)),
          retry(ac.signal),
        );
      }
    };
    // The first failure is the cause; the siblings' aborts follow from it.
    let failure: { readonly error: unknown } | undefined;
    await Promise.all(
      Array.from({ length: Math.min(policy.parallel, slices.length) }, () =>
        worker().catch((error: unknown) => {
          failure ??= { error };
          ac.abort(error);
        }),
      ),
    );
    if (failure !== undefined) throw signal?.aborted === true ? signal.reason : failure.error;
    let crc = 0;
    for (let i = 0; i < slices.length; i++) crc = crc32cCombine(crc, crcs[i]!, slices[i]!.end - slices[i]!.start + 1);
    const got = crc32cToBase64(crc);
    if (got !== obj.crc32c)
      throw new CombinedMismatch(
        `${rel}: crc32c ${got} (combined from ${slices.length} slices) does not match the listed ${obj.crc32c}`,
      );
    // The commit stage's barrier makes it durable; the early writeback left it only the tail.
    await writeback?.idle();
    // The last block was written whole (padded): back to the object's size.
    if (direct) await fh.truncate(obj.size);
    const st = await fh.stat({ bigint: true });
    await fh.close();
    staged = true;
    return {
      path: target,
      temp,
      relName: rel,
      bytes: obj.size,
      ...fileIdentity(st),
      crc32c: got,
    };
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!staged) {
      // No sync may still run on the descriptor when it is closed (its number could be reused).
      await writeback?.idle().catch(() => {});
      await fh.close().catch(() => {});
      await unlink(temp).catch(() => {});
    }
  }
}

/** Positional writes gather network chunks up to this size (one syscall per MiB, not per chunk). */
const WRITE_BATCH = MiB;

/** Direct writes go in chunks of WRITE_BATCH from this pool (one chunk per slice in flight). */
const DIRECT_CHUNKS = new AlignedChunks(WRITE_BATCH);

/**
 * Where one slice's bytes go, from its first byte: each network chunk as it arrives (`take`; a
 * promise while it writes, and the body waits), then what is left once all of them arrived
 * (`finish`); `crc` is the CRC32C of what it wrote. `release` gives back what it holds, once its
 * last write settled.
 */
interface SliceSink {
  take(buf: Buffer): Promise<void> | undefined;
  finish(): Promise<void>;
  crc(): number;
  release(): void;
}

/**
 * One slice: GET its range, check the answer is that range, feed its bytes to the sink `sinkAt`
 * makes for the slice's offset; their CRC32C. Too many or too few bytes, or another range, is an
 * IntegrityError (retried).
 */
async function fetchSlice(
  ctx: DownloadContext,
  obj: RemoteObject,
  slice: Slice,
  sinkAt: (position: number) => SliceSink,
  signal: AbortSignal,
): Promise<number> {
  const res = await ctx.source.openRange!(ctx.bucket, obj, slice.start, slice.end, signal);
  const body = res.body;
  let sink: SliceSink | undefined;
  try {
    const want = checkSliceAnswer(res, obj, slice);
    const to = sinkAt(slice.start);
    sink = to;
    const length = slice.end - slice.start + 1;
    let received = 0;
    await drain(body, (buf) => {
      received += buf.byteLength;
      if (received > length)
        throw new IntegrityError(`${obj.name}: slice ${want.slice(6)} is longer than ${length} bytes; cut off`);
      return to.take(buf);
    });
    if (received !== length)
      throw new IntegrityError(`${obj.name}: slice ${want.slice(6)}: got ${received} bytes, expected ${length}`);
    await to.finish();
    return to.crc();
  } catch (err) {
    // Free the connection at once; destroyed, never returned to the pool half-read.
    body.destroy?.();
    throw err;
  } finally {
    // drain settles only once no write is in flight: what the sink holds is free.
    sink?.release();
  }
}

/**
 * Network chunks gathered up to WRITE_BATCH and written with one positional writev, through the
 * page cache; after each, `writeback` (if any) starts its background sync.
 */
function bufferedSink(fd: number, position: number, writeback: Writeback | undefined): SliceSink {
  let crc = 0;
  let batch: Buffer[] = [];
  let batched = 0;
  const flush = async () => {
    let bufs = batch;
    batch = [];
    while (batched > 0) {
      // fs.writev on the fd, not FileHandle.writev: measured, the promise API's per-call cost
      // on the main thread was a third of the client's CPU on big objects (and more GC).
      const bytesWritten = await new Promise<number>((resolve, reject) =>
        writevCb(fd, bufs, position, (err, n) => (err ? reject(err) : resolve(n))),
      );
      position += bytesWritten;
      batched -= bytesWritten;
      noteWritten(bytesWritten);
      bufs = unwritten(bufs, bytesWritten);
    }
    writeback?.kick();
  };
  return {
    take: (buf) => {
      crc = crc32c(buf, crc);
      batch.push(buf);
      batched += buf.byteLength;
      return batched >= WRITE_BATCH ? flush() : undefined;
    },
    finish: flush,
    crc: () => crc,
    release: () => {},
  };
}

/**
 * Network chunks copied into an aligned chunk of DIRECT_CHUNKS, hashed there and written with
 * O_DIRECT a whole chunk at a time. Chunks are full except a slice's last, which is a whole
 * number of blocks unless the slice ends the object: that one is padded with zeros (the caller
 * cuts the file back to its size).
 */
function directSink(fd: number, position: number): SliceSink {
  const chunk = DIRECT_CHUNKS.take();
  let crc = 0;
  let fill = 0;
  const put = async () => {
    crc = crc32c(chunk.subarray(0, fill), crc);
    const padded = alignUp(fill);
    chunk.fill(0, fill, padded);
    // No noteWritten: a direct write leaves no dirty pages.
    await writeDirect(fd, chunk.subarray(0, padded), position);
    position += fill;
    fill = 0;
  };
  /** Copies `buf` from `from` on, writing each chunk it fills. */
  const copyRest = async (buf: Buffer, from: number) => {
    for (let at = from; at < buf.byteLength;) {
      const n = buf.copy(chunk, fill, at);
      fill += n;
      at += n;
      if (fill === chunk.byteLength) await put();
    }
  };
  return {
    take: (buf) => {
      // The common case (the chunk has room) stays synchronous: no promise per network chunk.
      const n = buf.copy(chunk, fill);
      fill += n;
      if (fill < chunk.byteLength) return undefined;
      return put().then(() => copyRest(buf, n));
    },
    finish: async () => {
      if (fill > 0) await put();
    },
    crc: () => crc,
    release: () => DIRECT_CHUNKS.give(chunk),
  };
}

/**
 * Checks that an answer to a slice's GET is that slice (206 with its Content-Range, the listed
 * generation); its Content-Range. A 200 (the whole body) is RangeIgnored.
 */
function checkSliceAnswer(
  res: { status: number; contentRange?: string | undefined; generation?: string | undefined },
  obj: RemoteObject,
  slice: Slice,
): string {
  if (res.status === 200) throw new RangeIgnored(`${obj.name}: the server ignored Range (200, whole body)`);
  const want = `bytes ${slice.start}-${slice.end}/${obj.size}`;
  if (res.status !== 206 || res.contentRange !== want)
    throw new IntegrityError(
      `${obj.name}: asked for ${want.slice(6)}, got HTTP ${res.status} with Content-Range ${res.contentRange ?? "(none)"}`,
    );
  if (res.generation !== undefined && res.generation !== obj.generation)
    throw new IntegrityError(`${obj.name}: got generation ${res.generation}, listed ${obj.generation}`);
  return want;
}
