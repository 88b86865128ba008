import { Worker } from "node:worker_threads";
import { stageBufferSync, type StagedFile } from "./atomic-file.ts";
import type { DirectoryGuard } from "./directory-guard.ts";
import { writerIdentity } from "./temp-names.ts";
import type { ExpectedContent } from "./expected-content.ts";
import { noteWritten } from "./barrier.ts";
import { directIo } from "./direct-io.ts";
import { IntegrityError, UnsafeNameError } from "./errors.ts";

/**
 * Where small verified objects are written (issue #11): `stageBufferSync` — the digest check, the
 * parents' mkdir/lstat, open, write, fstat, close — on stage threads, so that the main thread
 * (HTTP, planning, commits) never waits in a file-system call and the kernel's part of each file
 * runs on the other core. The bytes are received into a buffer of the arena (see Arena), which
 * is transferred to the thread (moved, never copied) and comes back with its answer, the staged
 * temp file; nothing is shared. The commit stage renames on the main thread, as before.
 * `threads: 0`, objects below THREAD_MIN_BYTES, or a thread that cannot start or died stage on
 * the calling thread.
 */
export interface Stager {
  /** Room for one object of `size` bytes to be received into, then staged; `release` it after `stage` settles. */
  lease(size: number): Lease;
  /**
   * A verified temp file beside `root/relName` holding `lease.bytes` (see `stageBufferSync`). On a
   * stage thread the lease's buffer is transferred (detached from the caller) and goes back to the
   * arena with the answer.
   */
  stage(job: StageJob): Promise<StagedFile>;
  /**
   * Whether an object of `size` bytes will be staged on a stage thread, which then makes its
   * directories itself (synchronous mkdirs, on its own core) rather than the calling thread before
   * the request. An answer gone stale (the thread stopped) is harmless: a stage on the calling
   * thread makes the directories too.
   */
  offThread(size: number): boolean;
  /**
   * Whether a stage thread stopped while it had requests: a temp file it was writing may be left
   * behind, so the run must not be recorded as a clean end (the next one walks and sweeps it).
   */
  readonly lost: boolean;
  /** Stops the threads once their requests are answered. */
  close(): Promise<void>;
}

/**
 * Stage threads by default. Writing through the page cache, one: the thread is busy copying bytes
 * into the cache, and one keeps a 2-core machine's second core for the local cloud and GC
 * (measured, README). Writing directly (`HCX_DIRECT_IO=all`, core/direct-io.ts), two: a thread
 * then mostly waits for the disk, one write per file. Measured, 10,000 × 150 KB on the bench VM, 3
 * interleaved triples on a fresh VM: direct with one thread 9.3–10.0 s, with two 7.45–7.50 s,
 * buffered with one 8.2–9.1 s. Only objects of THREAD_MIN_BYTES or more start a thread, so runs of
 * small objects start none.
 */
export function defaultStageThreads(direct = directIo.small): number {
  return direct ? 2 : 1;
}

/** The stage threads wanted: `HCX_STAGE_THREADS` (0–8, for measurements), else `fallback`. */
export function stageThreadsFromEnv(env = process.env["HCX_STAGE_THREADS"], fallback = defaultStageThreads()): number {
  if (env === undefined || env === "") return fallback;
  const n = Number(env);
  return Number.isInteger(n) && n >= 0 && n <= 8 ? n : fallback;
}

/** One object to stage: where it goes (`relName` under `root`, untrusted), its bytes and what they must be. */
export interface StageJob {
  readonly root: string;
  readonly relName: string;
  /** The remote name, for messages. */
  readonly name: string;
  readonly lease: Lease;
  readonly expected: ExpectedContent;
  /** The calling thread's guard of `root` (a stage thread keeps its own). */
  readonly guard: DirectoryGuard;
}

/** Bytes to receive one object into: a buffer of the arena, or one of its own. */
export interface Lease {
  readonly bytes: Uint8Array;
  /** Gives the buffer back to the arena (idempotent; one moved to a thread comes back with its answer). */
  release(): void;
}

/**
 * Buffers of `slotSize` bytes reused object after object: receiving a small object allocates no
 * buffer of its own (a fresh ArrayBuffer per object raised an in-thread cold copy's full
 * collections from 123 to 194, 10,000 × 150 KB). Plain ArrayBuffers, moved to a stage thread and
 * back: this was one SharedArrayBuffer, which a thread reads in place, but V8 copies into shared
 * memory with relaxed atomic stores (`relaxed_memmove`): receiving 10,000 × 150 KB into it cost
 * the main thread 0.8 s (cpu-prof), 6–9 GB/s against 25–32 into a plain buffer (a microbenchmark).
 * Up to `slots` free buffers are kept; a bigger object gets a buffer of its own, never kept.
 * Pages are touched only as buffers are made.
 */
export class Arena {
  readonly slotSize: number;
  readonly #slots: number;
  readonly #free: ArrayBuffer[] = [];
  constructor(slots = ARENA_SLOTS, slotSize = ARENA_SLOT_BYTES) {
    this.#slots = slots;
    this.slotSize = slotSize;
  }

  lease(size: number): Lease {
    if (size > this.slotSize) return { bytes: ownedBuffer(size), release: () => {} };
    const buffer = this.#free.pop() ?? new ArrayBuffer(this.slotSize);
    let out = true;
    return {
      bytes: new Uint8Array(buffer, 0, size),
      release: () => {
        if (!out) return;
        out = false;
        this.give(buffer);
      },
    };
  }

  /**
   * Takes a buffer back for reuse: one of this arena's size (a thread's answer returns it under a
   * new handle), unless `slots` are free already. A buffer moved to a thread is detached here
   * (zero bytes long) and is not taken until it comes back.
   */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.slotSize && this.#free.length < this.#slots) this.#free.push(buffer);
  }

  /** Buffers ready for reuse (for tests). */
  get free(): number {
    return this.#free.length;
  }
}

/** 64 buffers of 256 KiB (16 MiB, made as needed): twice the default concurrency of SIIM-sized objects. */
export const ARENA_SLOTS = 64;
export const ARENA_SLOT_BYTES = 256 * 1024;

/** A `Uint8Array` of `size` bytes over an ArrayBuffer of its own (never Node's shared pool). */
function ownedBuffer(size: number): Uint8Array {
  return new Uint8Array(new ArrayBuffer(size));
}

/** A stager with `threads` stage threads (0: the calling thread) for objects of at least `minBytes`. */
export function createStager(threads = stageThreadsFromEnv(), minBytes = threadMinBytesFromEnv()): Stager {
  return threads > 0 ? new ThreadStager(threads, minBytes) : new InThreadStager();
}

/** Stages on the calling thread; a `ThreadStager` lends its arena's buffers to its threads. */
class InThreadStager implements Stager {
  readonly arena = new Arena();
  get lost(): boolean {
    return false;
  }
  lease(size: number): Lease {
    return this.arena.lease(size);
  }
  offThread(_size: number): boolean {
    return false;
  }
  stage({ root, relName, name, lease, expected, guard }: StageJob): Promise<StagedFile> {
    try {
      const staged = stageBufferSync(root, relName, name, lease.bytes, expected, guard);
      if (staged.direct !== true) noteWritten(staged.bytes);
      return Promise.resolve(staged);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** What a stage thread is asked: the bytes are `length` bytes of `buffer`, which travels in the transfer list. */
export interface StageRequest {
  readonly id: number;
  readonly root: string;
  readonly relName: string;
  readonly name: string;
  readonly buffer: ArrayBuffer;
  readonly offset: number;
  readonly length: number;
  readonly expected: ExpectedContent;
}

/** What a stage thread starts with. */
export interface StageThreadData {
  readonly writerId: string;
  readonly counterBase: number;
}

/** What a stage thread answers: the staged file, or its error as plain data; and the request's buffer, back. */
export type StageReply = { readonly id: number; readonly buffer: ArrayBuffer } & (
  { readonly staged: StagedFile } | { readonly error: SerializedError }
);

export interface SerializedError {
  readonly kind: "unsafe" | "integrity" | "system";
  readonly message: string;
  readonly remoteName?: string;
  readonly reason?: string;
  readonly code?: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
}

/** An error as data that survives `postMessage` with what the engines classify by (type, `code`). */
export function serializeError(err: unknown): SerializedError {
  if (err instanceof UnsafeNameError)
    return { kind: "unsafe", message: err.message, remoteName: err.remoteName, reason: err.reason };
  if (err instanceof IntegrityError) return { kind: "integrity", message: err.message };
  const e = err as NodeJS.ErrnoException;
  return {
    kind: "system",
    message: e instanceof Error ? e.message : String(err),
    ...(typeof e.code === "string" ? { code: e.code } : {}),
    ...(typeof e.errno === "number" ? { errno: e.errno } : {}),
    ...(typeof e.syscall === "string" ? { syscall: e.syscall } : {}),
    ...(typeof e.path === "string" ? { path: e.path } : {}),
  };
}

/** The error `serializeError` describes, of the same class (or an Error with the same errno fields). */
export function deserializeError(s: SerializedError): Error {
  if (s.kind === "unsafe") return new UnsafeNameError(s.remoteName ?? "", s.reason ?? s.message);
  if (s.kind === "integrity") return new IntegrityError(s.message);
  const e = new Error(s.message) as NodeJS.ErrnoException;
  if (s.code !== undefined) e.code = s.code;
  if (s.errno !== undefined) e.errno = s.errno;
  if (s.syscall !== undefined) e.syscall = s.syscall;
  if (s.path !== undefined) e.path = s.path;
  return e;
}

/**
 * Objects below this size are staged on the calling thread: their cost is the file's creation, not
 * its bytes, and a round trip to a thread costs about what it saves (20,000 × 16 KB: 5.6–5.9 s
 * with the thread, 5.7–6.2 s without), while a thread is a V8 isolate of ~20 MiB. So a run of
 * small objects never starts one (memory flat: README), and bigger objects, where copying and
 * hashing the bytes is most of the work, move it off the main thread (10,000 × 150 KB: 4.85 s
 * with the thread, 5.55–5.9 s without).
 */
export const THREAD_MIN_BYTES = 64 * 1024;

/** `HCX_STAGE_THREAD_MIN_BYTES` (for measurements, and to run the suites through the thread), else the default. */
export function threadMinBytesFromEnv(env = process.env["HCX_STAGE_THREAD_MIN_BYTES"]): number {
  const n = env === undefined || env === "" ? NaN : Number(env);
  return Number.isSafeInteger(n) && n >= 0 ? n : THREAD_MIN_BYTES;
}

/** Each thread names temp files in its own counter range, far above the main thread's. */
const COUNTER_RANGE = 2 ** 40;

interface Pending {
  readonly resolve: (s: StagedFile) => void;
  readonly reject: (e: Error) => void;
}

class StageThread {
  readonly worker: Worker;
  readonly pending = new Map<number, Pending>();
  broken: Error | undefined;
  /** It stopped with requests in flight. */
  lostRequests = false;
  constructor(index: number, arena: Arena) {
    const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
    const workerData: StageThreadData = {
      writerId: writerIdentity(),
      counterBase: (index + 1) * COUNTER_RANGE,
    };
    this.worker = new Worker(new URL(`./stage-thread${ext}`, import.meta.url), {
      workerData,
      // Its own small heap: it holds no more than the buffers in flight.
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 2 },
      stdout: false,
      stderr: false,
    });
    // Never what keeps the process alive: a request in flight is awaited by its caller.
    this.worker.unref();
    this.worker.on("message", (r: StageReply) => {
      arena.give(r.buffer);
      const p = this.pending.get(r.id);
      if (p === undefined) return;
      this.pending.delete(r.id);
      if ("staged" in r) {
        if (r.staged.direct !== true) noteWritten(r.staged.bytes);
        p.resolve(r.staged);
      } else p.reject(deserializeError(r.error));
    });
    const fail = (cause: Error) => {
      this.broken ??= cause;
      if (this.pending.size > 0) this.lostRequests = true;
      // Retryable: the download is fetched again and staged by a live thread, or in-thread.
      const err = Object.assign(new Error(`a stage thread stopped: ${cause.message}`, { cause }), {
        code: "HCX_STAGE_LOST",
      });
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`a stage thread exited (code ${code})`)));
  }
}

export class ThreadStager extends InThreadStager {
  readonly #size: number;
  readonly #minBytes: number;
  readonly #threads: StageThread[] = [];
  #next = 1;
  constructor(size: number, minBytes = THREAD_MIN_BYTES) {
    super();
    this.#size = size;
    this.#minBytes = minBytes;
  }

  override get lost(): boolean {
    return this.#threads.some((t) => t.lostRequests);
  }

  /** The threads started so far (for tests). */
  get workers(): readonly Worker[] {
    return this.#threads.map((t) => t.worker);
  }

  override offThread(size: number): boolean {
    return (
      size >= this.#minBytes && (this.#threads.length < this.#size || this.#threads.some((t) => t.broken === undefined))
    );
  }

  override stage(job: StageJob): Promise<StagedFile> {
    const { bytes } = job.lease;
    const t = bytes.byteLength >= this.#minBytes ? this.#pick() : undefined;
    if (t === undefined) return super.stage(job);
    const id = this.#next++;
    return new Promise<StagedFile>((resolve, reject) => {
      t.pending.set(id, { resolve, reject });
      const req: StageRequest = {
        id,
        root: job.root,
        relName: job.relName,
        name: job.name,
        buffer: bytes.buffer as ArrayBuffer,
        offset: bytes.byteOffset,
        length: bytes.byteLength,
        expected: job.expected,
      };
      try {
        t.worker.postMessage(req, [req.buffer]);
      } catch (err) {
        t.pending.delete(id);
        reject(err as Error);
      }
    });
  }

  /** The least busy live thread, starting threads lazily (a run that writes nothing starts none). */
  #pick(): StageThread | undefined {
    let best: StageThread | undefined;
    for (const t of this.#threads)
      if (t.broken === undefined && (best === undefined || t.pending.size < best.pending.size)) best = t;
    if ((best === undefined || best.pending.size > 0) && this.#threads.length < this.#size) {
      try {
        const t = new StageThread(this.#threads.length, this.arena);
        this.#threads.push(t);
        return t;
      } catch {
        return best;
      }
    }
    return best;
  }

  override async close(): Promise<void> {
    const threads = this.#threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate().catch(() => {})));
  }
}
