import { discardStaged, stageFile, type StagedFile } from "../core/atomic-file.ts";
import type { DirectoryGuard } from "../core/directory-guard.ts";
import type { ExpectedContent } from "../core/expected-content.ts";
import type { Clock } from "../core/clock.ts";
import { HcexportError, UnsafeNameError } from "../core/errors.ts";
import type { Gate } from "../core/gate.ts";
import { createStager, type Stager } from "../core/stage-pool.ts";
import { receiveInto } from "../net/receive-into.ts";
import { withRetry, type RetryNotice, type RetryPolicy } from "../core/retry.ts";
import { checkRelativeName } from "../core/safe-path.ts";
import type { RemoteObject, RemoteSource } from "./ports.ts";
import { DEFAULT_RANGED, rangedDownload, wantsRanged, type RangedPolicy } from "./ranged-download.ts";

export interface DownloadContext {
  readonly source: RemoteSource;
  readonly bucket: string;
  readonly dest: string;
  readonly guard: DirectoryGuard;
  readonly clock: Clock;
  readonly retry?: RetryPolicy | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly onRetry?: (notice: RetryNotice) => void;
  /**
   * The whole budget of one object, every attempt included (ms; default: none). A server that
   * keeps answering slowly (each read inside the idle timeout) cannot hold an object forever.
   */
  readonly budgetMs?: ((obj: RemoteObject) => number) | undefined;
  /** Big objects as ranged parallel GETs (ranged-download.ts); default DEFAULT_RANGED, false: off. */
  readonly ranged?: RangedPolicy | false | undefined;
  /**
   * The commit stage will sync the batch (default true; false with `--no-fsync`): big objects then
   * start their writeback while slices land, so the barrier has only the tail left.
   */
  readonly durable?: boolean;
  /** Where small objects are verified and written (stage-pool.ts); default: the calling thread. */
  readonly stager?: Stager | undefined;
  /**
   * The network stage: requests in flight at once across objects (default: unbounded here, the
   * caller's pool bounds them). A permit is held from the request until the body is received
   * (streamed objects: until the temp file is written; ranged ones: their whole download), never
   * while directories are made or a small object is verified and written, so the connections stay
   * busy while those run. The mirror sizes it to `--concurrency`.
   */
  readonly connections?: Gate | undefined;
}

/** `fn` under one of the context's connection permits, if it bounds them. */
const connected = <T>(ctx: DownloadContext, fn: () => Promise<T>): Promise<T> =>
  ctx.connections === undefined ? fn() : ctx.connections.run(fn);

let fallbackStager: Stager | undefined;
/** The stager of a context without one (tests, one-off downloads): the calling thread. */
const inThread = () => (fallbackStager ??= createStager(0));

/**
 * The transfer stage: downloads exactly the listed generation of `obj` into a verified temp file
 * beside `dest/rel` (parent directories made and checked first, or by the stage thread that
 * writes the object; bytes verified against the listed size and CRC32C, MD5 when there is no
 * CRC32C, while streaming, or for a small object, by the stager before it writes them), holding
 * one of `ctx.connections` only while its request runs. Transient failures (429/5xx, resets,
 * truncation, a hash mismatch) are retried with backoff. The final name is untouched: the commit
 * stage (commit-queue.ts) syncs and renames it.
 */
export async function downloadObject(ctx: DownloadContext, obj: RemoteObject, rel: string): Promise<StagedFile> {
  const check = checkRelativeName(rel);
  if (!check.ok) throw new UnsafeNameError(obj.name, check.reason);
  const expected = {
    size: obj.size,
    ...(obj.crc32c !== undefined ? { crc32c: obj.crc32c } : obj.md5Hash !== undefined ? { md5: obj.md5Hash } : {}),
  };
  const budget = ctx.budgetMs?.(obj);
  if (budget === undefined) return attempts(ctx, obj, rel, check.segments, expected, ctx.signal);
  // One controller per object, aborted by the run's signal or by the budget watch (a single
  // timer for all in-flight objects: a timer per object would pile up on a fast mirror).
  const ac = new AbortController();
  const onAbort = () => ac.abort(ctx.signal?.reason);
  if (ctx.signal?.aborted === true) onAbort();
  else ctx.signal?.addEventListener("abort", onAbort, { once: true });
  const untrack = budgetWatch.track(performance.now() + budget, ac);
  try {
    return await attempts(ctx, obj, rel, check.segments, expected, ac.signal);
  } catch (err) {
    if (ac.signal.aborted && ctx.signal?.aborted !== true) throw new BudgetError(obj.name, budget);
    throw err;
  } finally {
    untrack();
    ctx.signal?.removeEventListener("abort", onAbort);
  }
}

/** Aborts objects past their deadline; one interval timer while any object is tracked. */
class BudgetWatch {
  readonly #tracked = new Map<AbortController, number>();
  #timer: NodeJS.Timeout | undefined;

  track(deadline: number, ac: AbortController): () => void {
    this.#tracked.set(ac, deadline);
    this.#timer ??= setInterval(() => this.#sweep(), 200).unref();
    return () => {
      this.#tracked.delete(ac);
      if (this.#tracked.size === 0 && this.#timer !== undefined) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  #sweep(): void {
    const now = performance.now();
    for (const [ac, deadline] of this.#tracked) if (now >= deadline) ac.abort(new Error("time budget exhausted"));
  }
}

const budgetWatch = new BudgetWatch();

function attempts(
  ctx: DownloadContext,
  obj: RemoteObject,
  rel: string,
  segments: readonly string[],
  expected: ExpectedContent,
  signal: AbortSignal | undefined,
): Promise<StagedFile> {
  const ranged = ctx.ranged ?? DEFAULT_RANGED;
  if (wantsRanged(ranged, ctx.source, obj))
    return connected(ctx, () => rangedDownload(ctx, ranged, obj, rel, segments, signal)).then(
      // undefined: the server ignored Range; stream the object instead.
      (written) => written ?? streamed(ctx, obj, rel, segments, expected, signal),
    );
  return streamed(ctx, obj, rel, segments, expected, signal);
}

async function streamed(
  ctx: DownloadContext,
  obj: RemoteObject,
  rel: string,
  segments: readonly string[],
  expected: ExpectedContent,
  signal: AbortSignal | undefined,
): Promise<StagedFile> {
  // An abort makes withRetry reject at once, while the attempt may still be writing (on the stage
  // thread, or a big object's last write): a temp file staged for nobody is removed, whichever
  // side finishes last, so an interrupted run leaves none behind.
  let abandoned = false;
  let returned: StagedFile | undefined;
  const claim = (staged: StagedFile): StagedFile => {
    if (abandoned) {
      discardStaged(staged);
      throw new Error(`${obj.name}: staged after the download was given up`);
    }
    return (returned = staged);
  };
  try {
    return await withRetry(
      async () => {
        const stager = obj.size <= SMALL_OBJECT ? (ctx.stager ?? inThread()) : undefined;
        // Made here, before the request, unless a stage thread will make them beside the temp file:
        // 20,000 mkdirs handed to libuv's threads cost the main thread 1.1 s (cpu-prof), a seventh
        // of its busy time in a 10,000-object copy. A name whose directory cannot be made (a file
        // or a symlink in the way) is then refused after its download instead of before.
        if (stager?.offThread(obj.size) !== true) await ctx.guard.ensure(segments.slice(0, -1), obj.name);
        if (stager === undefined)
          return claim(
            await connected(ctx, () =>
              received(ctx, obj, signal, (body) => stageFile(ctx.dest, rel, body, { guard: ctx.guard, expected })),
            ),
          );
        // The connection is given back once the bytes are in: the check and the write run beside the next request.
        const lease = await connected(ctx, async () => {
          const lease = stager.lease(obj.size);
          try {
            await receiveObject(ctx, obj, lease.bytes, signal);
            return lease;
          } catch (err) {
            lease.release();
            throw err;
          }
        });
        try {
          return claim(
            await stager.stage({ root: ctx.dest, relName: rel, name: obj.name, lease, expected, guard: ctx.guard }),
          );
        } finally {
          lease.release();
        }
      },
      {
        clock: ctx.clock,
        ...(ctx.retry === undefined ? {} : { policy: ctx.retry }),
        ...(signal === undefined ? {} : { signal }),
        ...(ctx.onRetry === undefined ? {} : { onRetry: ctx.onRetry }),
      },
    );
  } catch (err) {
    abandoned = true;
    if (returned !== undefined) discardStaged(returned);
    throw err;
  }
}

/** `obj`'s bytes, exactly `into.byteLength` of them, into `into`: by the source's `receive` where it has one. */
function receiveObject(
  ctx: DownloadContext,
  obj: RemoteObject,
  into: Uint8Array,
  signal: AbortSignal | undefined,
): Promise<void> {
  if (ctx.source.receive === undefined) return received(ctx, obj, signal, (body) => receiveInto(body, into, obj.name));
  signal?.throwIfAborted(); // the run stopped while this object waited for a connection
  return ctx.source.receive(ctx.bucket, obj, into, signal);
}

/** Opens `obj` and hands its body to `use`; a body `use` fails on is destroyed at once. */
async function received<T>(
  ctx: DownloadContext,
  obj: RemoteObject,
  signal: AbortSignal | undefined,
  use: (body: AsyncIterable<Uint8Array>) => Promise<T>,
): Promise<T> {
  signal?.throwIfAborted(); // the run stopped while this object waited for a connection
  const body = await ctx.source.open(ctx.bucket, obj, signal);
  try {
    return await use(body);
  } catch (err) {
    // Free the connection at once: an unread body would hold a pool slot until it times out.
    // Destroyed, not returned to the pool: a stalled or overlong connection is never reused.
    (body as { destroy?: () => void }).destroy?.();
    throw err;
  }
}

/**
 * Objects up to this size are received whole into a stager's lease, then verified and written in
 * one go (stage-pool.ts); larger ones stream to the temp file, hashed as they arrive. 4 MiB × the
 * concurrency bounds the memory; a SIIM instance is ~150 KB.
 */
export const SMALL_OBJECT = 4 * 1024 * 1024;

/** An object whose attempts together took longer than its budget: given up (not retried further). */
export class BudgetError extends HcexportError {
  constructor(name: string, budgetMs: number) {
    super(`${name}: no complete copy within the time budget of ${Math.round(budgetMs / 1000)} s (all attempts)`);
    this.name = "BudgetError";
  }
}

/**
 * The default budget of one object: a few idle timeouts (for retries of stalls) plus its size at
 * a slow but working 256 KiB/s, so big objects on a thin line still finish.
 */
export function defaultBudgetMs(idleTimeoutMs: number): (obj: RemoteObject) => number {
  return (obj) => 6 * idleTimeoutMs + Math.ceil(obj.size / 256);
}
