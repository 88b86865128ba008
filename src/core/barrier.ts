import type { ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { existsSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";

/**
 * Durability barriers for a batch of files (DESIGN §6, issue #11): after `barrier.data(temps)`
 * the bytes of those files are on stable storage; after `barrier.names(dirs)` the directory
 * entries made before it (renames, mkdirs) are too.
 *
 * - `syncfs`: `sync -f DIR` (coreutils; Node has no syncfs binding): one syscall in a child
 *   process flushes the whole file system of DIR, whatever the batch size. Batches of at most
 *   64 files (64 directories), and any batch while another writer's dirty pages wait, sync their
 *   own instead (see OWN_SYNC_MAX_FILES, FOREIGN_DIRTY_BYTES). Run by one long-lived shell
 *   (`SyncHelper`), so the main thread pays a pipe write, not a fork of Node, per barrier.
 * - `fdatasync`: every temp file opened and fdatasynced on the thread pool, then each touched
 *   directory (and its ancestors up to the root: a new directory's entry lives in its parent)
 *   fsynced. The fallback where `sync -f` is missing (macOS) or fails to start.
 * - `none` (`--no-fsync`): no barrier at all, rclone's semantics.
 */
export type BarrierKind = "syncfs" | "fdatasync" | "none";

export interface Barrier {
  readonly kind: BarrierKind;
  /** Makes the bytes of these (closed) files durable. */
  data(files: readonly string[]): Promise<void>;
  /** Makes the entries in these directories (below `root`) durable. */
  names(dirs: Iterable<string>): Promise<void>;
}

/** Where coreutils' `sync` is, if it takes `-f` (GNU, Linux); undefined elsewhere. */
function syncBinary(): string | undefined {
  if (process.platform !== "linux") return undefined;
  return ["/usr/bin/sync", "/bin/sync"].find((p) => existsSync(p));
}

/**
 * The barrier for `root`: `none` when not durable, else syncfs where `sync -f` exists, else
 * fdatasync. `HCX_BARRIER=fdatasync|syncfs` forces one (for measurements and tests).
 */
export function barrierFor(
  root: string,
  durable: boolean,
  forced = process.env["HCX_BARRIER"],
  dirty: () => number | undefined = dirtyBytes,
): Barrier {
  if (!durable) return noBarrier;
  const bin = syncBinary();
  if (forced === "fdatasync" || bin === undefined) return fdatasyncBarrier(root);
  return syncfsBarrier(root, bin, dirty);
}

/** Bytes this process wrote into files that a barrier makes durable (see `noteWritten`). */
let writtenBytes = 0;

/** Counts bytes written to a file a barrier will sync, so barriers can tell their dirty pages from other writers'. */
export function noteWritten(bytes: number): void {
  writtenBytes += bytes;
}

/**
 * Dirty page-cache bytes waiting for writeback, machine-wide (/proc/meminfo `Dirty:`), or
 * undefined where that cannot be read. One small read per barrier.
 */
export function dirtyBytes(): number | undefined {
  try {
    const m = /^Dirty:\s+(\d+) kB$/m.exec(readFileSync("/proc/meminfo", "latin1"));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

const noBarrier: Barrier = { kind: "none", data: async () => {}, names: async () => {} };

function syncfsBarrier(dest: string, bin: string, dirty: () => number | undefined): Barrier {
  // Absolute, so a destination named like an option (`-x`) is never read as one by `sync`.
  const root = path.resolve(dest);
  const fallback = fdatasyncBarrier(root);
  // A root whose name holds a newline cannot be sent as one line: use the fallback.
  let helper: SyncHelper | undefined = root.includes("\n") ? undefined : new SyncHelper(bin);
  const run = async (onFallback: () => Promise<void>) => {
    if (helper !== undefined) {
      const mark = writtenBytes;
      const ok = await helper.sync(root);
      if (ok) {
        flushedUpTo = Math.max(flushedUpTo, mark);
        return;
      }
      helper = undefined; // could not start: the fallback from now on
    }
    await onFallback();
  };
  // syncfs pays for every writer's dirty pages: when the machine holds far more of them than this
  // process wrote since its last syncfs began, someone else is writing, and the batch syncs its
  // own files however many they are.
  let flushedUpTo = 0;
  const own = (n: number) =>
    n <= OWN_SYNC_MAX_FILES || (dirty() ?? 0) - (writtenBytes - flushedUpTo) > FOREIGN_DIRTY_BYTES;
  return {
    kind: "syncfs",
    data: (files) => (own(files.length) ? fallback.data(files) : run(() => fallback.data(files))),
    names: (dirs) => {
      // Counted with their ancestors: what the fallback would fsync, one by one.
      const all = withAncestors(dirs, root);
      return own(all.length) ? fsyncEach(all) : run(() => fsyncEach(all));
    },
  };
}

/**
 * A batch this small syncs its own files (and directories) instead of the whole file system:
 * syncfs also writes out every other writer's dirty pages on that file system. Measured (3,000
 * objects, 30 changed, 1.5 GB left dirty by another writer): the re-sync took 1.26–1.50 s with
 * syncfs and 0.45–0.49 s with its own 30 fdatasyncs. A big batch (a cold copy) keeps syncfs: one
 * syscall instead of hundreds of fsyncs queued on libuv's threads. The same bound holds for the
 * directories after the renames, counted with their ancestors (a SIIM file adds its series and its
 * study): counted without them, a cold copy's batches of ~100 files made ~195 directory fsyncs each
 * (19,326 fsyncs for 10,000 files, by strace), every one a journal commit.
 */
const OWN_SYNC_MAX_FILES = 64;
/**
 * Dirty bytes machine-wide, beyond what this process wrote since its last syncfs began, above
 * which a batch of any size syncs its own files: syncfs would wait for another writer's pages.
 * Measured (10,000 × 150 KB mirrored, 100 files to fetch again, 1.5 GB left dirty by `dd`, 4
 * interleaved pairs): 1.26–1.96 s with syncfs, 0.82–1.16 s with the batch's own fdatasyncs. A cold
 * copy alone keeps its syncfs.
 */
const FOREIGN_DIRTY_BYTES = 192 * 1024 * 1024;

/**
 * One small shell for the whole run that runs `sync -f DIR` for each line it reads and answers
 * `ok` or the error: spawning from Node forks the whole (large) process on the main thread —
 * measured at 4–50 ms a spawn — while the shell forks only itself. Unreferenced between requests,
 * so it never keeps Node alive; it exits when Node does (its stdin closes).
 */
type SyncChild = ChildProcessByStdio<Writable, Readable, null>;

class SyncHelper {
  readonly #bin: string;
  #child: SyncChild | undefined;
  #failed = false;
  #lines = "";
  #stderr = "";
  readonly #waiting: Array<{ resolve: (ok: boolean) => void; reject: (err: Error) => void; root: string }> = [];

  constructor(bin: string) {
    this.#bin = bin;
  }

  /** Resolves true once DIR's file system is synced, false if the helper could not run; rejects on a sync error. */
  sync(root: string): Promise<boolean> {
    const child = this.#start();
    if (child === undefined) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      if (this.#waiting.length === 0) (child.stdout as unknown as { ref(): void }).ref();
      this.#waiting.push({ resolve, reject, root });
      child.stdin.write(`${root}\n`);
    });
  }

  #start(): SyncChild | undefined {
    if (this.#failed) return undefined;
    if (this.#child !== undefined) return this.#child;
    const script = `while IFS= read -r d; do if "$0" -f "$d" 2>&1; then echo "@ok"; else echo "@fail"; fi; done`;
    let child: SyncChild;
    try {
      // Loaded here, not at start-up: a run with nothing to sync never needs child_process (or the dgram it loads).
      const { spawn } = process.getBuiltinModule("node:child_process");
      child = spawn("/bin/sh", ["-c", script, this.#bin], { stdio: ["pipe", "pipe", "ignore"] });
    } catch {
      this.#failed = true;
      return undefined;
    }
    child.unref();
    (child.stdin as unknown as { unref(): void }).unref();
    (child.stdout as unknown as { unref(): void }).unref();
    child.stdout.setEncoding("utf8").on("data", (d: string) => this.#onData(d));
    const gone = () => {
      this.#failed = true;
      this.#child = undefined;
      for (const w of this.#waiting.splice(0)) w.resolve(false);
    };
    child.once("error", gone);
    child.once("exit", gone);
    child.stdin.on("error", gone);
    this.#child = child;
    return child;
  }

  #onData(d: string): void {
    this.#lines += d;
    let i: number;
    while ((i = this.#lines.indexOf("\n")) >= 0) {
      const line = this.#lines.slice(0, i);
      this.#lines = this.#lines.slice(i + 1);
      if (line !== "@ok" && line !== "@fail") {
        this.#stderr += `${line}\n`;
        continue;
      }
      const w = this.#waiting.shift();
      if (this.#waiting.length === 0) (this.#child?.stdout as unknown as { unref(): void } | undefined)?.unref();
      if (w === undefined) continue;
      if (line === "@ok") w.resolve(true);
      else w.reject(syncError(w.root, this.#stderr.trim() || "sync -f failed"));
      this.#stderr = "";
    }
  }
}

/** A failed syncfs is an I/O error of the destination (EIO): the batch is not durable. */
function syncError(root: string, message: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`syncing ${root} failed: ${message}`);
  err.code = "EIO";
  return err;
}

function fdatasyncBarrier(root: string): Barrier {
  const top = path.resolve(root);
  return {
    kind: "fdatasync",
    data: async (files) => {
      await Promise.all(
        files.map(async (f) => {
          const fh = await open(f, "r");
          try {
            await fh.datasync();
          } finally {
            await fh.close();
          }
        }),
      );
    },
    names: (dirs) => fsyncEach(withAncestors(dirs, top)),
  };
}

/**
 * `dirs` and each one's ancestors up to `top` (a new directory's entry lives in its parent), each
 * once, for the directory barrier. Directories outside `top` are kept but not climbed from.
 */
export function withAncestors(dirs: Iterable<string>, top: string): string[] {
  const root = path.resolve(top);
  const all = new Set<string>();
  for (const d of dirs) {
    for (let at = path.resolve(d); ; at = path.dirname(at)) {
      if (all.has(at)) break;
      all.add(at);
      if (at === root || !at.startsWith(root + path.sep)) break;
    }
  }
  return [...all];
}

/** fsync each directory, in parallel on the thread pool. */
async function fsyncEach(dirs: readonly string[]): Promise<void> {
  await Promise.all(
    dirs.map(async (d) => {
      const fh = await open(d, "r");
      try {
        // Some file systems refuse fsync on a directory (EINVAL): nothing more can be done there.
        await fh.sync().catch((e: NodeJS.ErrnoException) => (e.code === "EINVAL" ? undefined : Promise.reject(e)));
      } finally {
        await fh.close();
      }
    }),
  );
}
