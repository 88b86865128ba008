import { stat } from "node:fs/promises";
import { DirectoryGuard, writeFileAtomic } from "../core/atomic-file.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { UnsafeNameError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { isRetryable, withRetry, type RetryPolicy } from "../core/retry.ts";
import { checkRelativeName, resolveInside } from "../core/safe-path.ts";
import { Manifest } from "./manifest.ts";
import type { RemoteObject, RemoteSource } from "./ports.ts";
import { shardOf } from "./shard.ts";

export type MirrorEvent =
  | { readonly kind: "mirror.start"; readonly source: string; readonly dest: string; readonly concurrency: number }
  | { readonly kind: "mirror.file"; readonly name: string; readonly action: "downloaded" | "skipped" | "would-download"; readonly bytes: number }
  | { readonly kind: "mirror.refused"; readonly name: string; readonly reason: string }
  | { readonly kind: "mirror.failed"; readonly name: string; readonly reason: string }
  | { readonly kind: "mirror.retry"; readonly name: string; readonly attempt: number; readonly delayMs: number; readonly reason: string }
  | { readonly kind: "mirror.progress"; readonly listed: number; readonly downloaded: number; readonly skipped: number; readonly bytes: number; readonly elapsedMs: number }
  | { readonly kind: "mirror.done"; readonly summary: MirrorSummary };

export interface MirrorOptions {
  readonly source: RemoteSource;
  readonly bucket: string;
  /** Object prefix treated as a directory ("" = whole bucket). */
  readonly prefix: string;
  readonly dest: string;
  readonly concurrency?: number;
  readonly dryRun?: boolean;
  readonly shard?: { readonly index: number; readonly count: number };
  readonly onEvent?: EventSink<MirrorEvent>;
  readonly signal?: AbortSignal;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  /** fsync each file before rename (default true). */
  readonly fsync?: boolean;
}

export interface MirrorSummary {
  listed: number;
  downloaded: number;
  skipped: number;
  failed: number;
  refused: number;
  bytes: number;
  durationMs: number;
  /** The first 100 failures and refusals, with reasons. */
  failures: Array<{ name: string; reason: string }>;
}

/** Default parallel downloads: see the README's benchmark for the measurement behind it. */
export const DEFAULT_CONCURRENCY = 32;

/**
 * Mirrors `gs://bucket/prefix/` to `dest`: streamed listing, a decision per object (skip when the
 * manifest and the local file show the same content), bounded parallel downloads pinned to the
 * listed generation, verified against CRC32C/MD5 and written atomically. Unsafe names are
 * refused and counted, never written. Returns the summary; the caller turns failures into exit 5.
 */
export async function mirror(options: MirrorOptions): Promise<MirrorSummary> {
  const clock = options.clock ?? systemClock;
  const emit = options.onEvent ?? (() => {});
  const concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
  const started = clock.now();
  const s: MirrorSummary = { listed: 0, downloaded: 0, skipped: 0, failed: 0, refused: 0, bytes: 0, durationMs: 0, failures: [] };
  const note = (name: string, reason: string) => {
    if (s.failures.length < 100) s.failures.push({ name, reason });
  };
  const listPrefix = options.prefix === "" ? "" : `${options.prefix.replace(/\/+$/, "")}/`;
  emit({ kind: "mirror.start", source: `gs://${options.bucket}/${listPrefix}`, dest: options.dest, concurrency });

  const manifest = await Manifest.open(options.dest);
  const guard = new DirectoryGuard(options.dest);
  const running = new Set<Promise<void>>();
  let lastProgress = started;

  const transfer = async (obj: RemoteObject, rel: string) => {
    try {
      const written = await withRetry(
        async () => {
          const body = await options.source.open(options.bucket, obj, options.signal);
          return writeFileAtomic(options.dest, rel, body, {
            guard,
            fsync: options.fsync ?? true,
            expected: { size: obj.size, ...(obj.crc32c !== undefined ? { crc32c: obj.crc32c } : obj.md5Hash !== undefined ? { md5: obj.md5Hash } : {}) },
          });
        },
        {
          ...(options.retry === undefined ? {} : { policy: options.retry }),
          clock,
          ...(options.signal === undefined ? {} : { signal: options.signal }),
          onRetry: (n) => emit({ kind: "mirror.retry", name: obj.name, attempt: n.attempt, delayMs: n.delayMs, reason: n.error instanceof Error ? n.error.message : String(n.error) }),
        },
      );
      manifest.set({ n: rel, size: obj.size, generation: obj.generation, ...(obj.crc32c === undefined ? {} : { crc32c: obj.crc32c }), ...(obj.md5Hash === undefined ? {} : { md5: obj.md5Hash }), mtimeMs: written.mtimeMs });
      s.downloaded++;
      s.bytes += obj.size;
      emit({ kind: "mirror.file", name: obj.name, action: "downloaded", bytes: obj.size });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      if (err instanceof UnsafeNameError) {
        s.refused++;
        note(obj.name, err.message);
        emit({ kind: "mirror.refused", name: obj.name, reason: err.message });
      } else {
        s.failed++;
        const reason = `${err instanceof Error ? err.message : String(err)}${isRetryable(err) ? " (gave up after retries)" : ""}`;
        note(obj.name, reason);
        emit({ kind: "mirror.failed", name: obj.name, reason });
      }
    }
  };

  try {
    for await (const page of options.source.listPages(options.bucket, listPrefix, options.signal)) {
      for (const obj of page) {
        if (options.shard !== undefined && shardOf(obj.name, options.shard.count) !== options.shard.index) continue;
        s.listed++;
        const rel = obj.name.slice(listPrefix.length);
        const check = checkRelativeName(rel);
        if (!check.ok) {
          s.refused++;
          const reason = `refusing unsafe name ${JSON.stringify(obj.name)}: ${check.reason}`;
          note(obj.name, reason);
          emit({ kind: "mirror.refused", name: obj.name, reason });
          continue;
        }
        if (await upToDate(manifest, options.dest, rel, obj, options.dryRun === true)) {
          s.skipped++;
          emit({ kind: "mirror.file", name: obj.name, action: "skipped", bytes: 0 });
          continue;
        }
        if (options.dryRun === true) {
          emit({ kind: "mirror.file", name: obj.name, action: "would-download", bytes: obj.size });
          continue;
        }
        const task = transfer(obj, rel).finally(() => running.delete(task));
        running.add(task);
        if (running.size >= concurrency) await Promise.race(running);
        const now = clock.now();
        if (now - lastProgress >= 500) {
          lastProgress = now;
          await manifest.flush();
          emit({ kind: "mirror.progress", listed: s.listed, downloaded: s.downloaded, skipped: s.skipped, bytes: s.bytes, elapsedMs: now - started });
        }
      }
    }
    await Promise.all(running);
  } finally {
    await Promise.allSettled(running);
    if (options.dryRun !== true) await manifest.flush();
  }
  s.durationMs = clock.now() - started;
  emit({ kind: "mirror.done", summary: s });
  return s;
}

/**
 * Whether `rel` already holds the object's content: the manifest recorded the same content hash
 * and size, and the local file still has the size and mtime recorded then. A re-export that
 * rewrote identical bytes (new generation, same hash) counts as up to date; the manifest then
 * learns the new generation.
 */
async function upToDate(manifest: Manifest, dest: string, rel: string, obj: RemoteObject, dryRun: boolean): Promise<boolean> {
  const entry = manifest.get(rel);
  if (entry === undefined || entry.size !== obj.size) return false;
  const sameContent = obj.crc32c !== undefined ? entry.crc32c === obj.crc32c : obj.md5Hash !== undefined && entry.md5 === obj.md5Hash;
  if (!sameContent) return false;
  const st = await stat(resolveInside(dest, rel)).catch(() => undefined);
  if (st === undefined || !st.isFile() || st.size !== entry.size || st.mtimeMs !== entry.mtimeMs) return false;
  if (entry.generation !== obj.generation && !dryRun) manifest.set({ ...entry, generation: obj.generation });
  return true;
}
