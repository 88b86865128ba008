import { lstat, unlink } from "node:fs/promises";
import path from "node:path";
import { DirectoryGuard, tempWriterGone } from "../core/atomic-file.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { destinationProblem } from "../core/destination.ts";
import { DestinationError, destinationFault, fatalFault, UnsafeNameError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { isRetryable, type RetryPolicy } from "../core/retry.ts";
import { downloadObject, type DownloadContext } from "./download.ts";
import { hashLocal, statLocal } from "./local-io.ts";
import { walkLocal, type LocalEntry } from "./local-walk.ts";
import { Manifest } from "./manifest.ts";
import { NameFilter, decide, decideExtra, deleteBlocker, march, sameContent, type Accepted } from "./plan.ts";
import type { RemoteObject, RemoteSource } from "./ports.ts";
import { TaskPool } from "./task-pool.ts";

export type MirrorEvent =
  | {
      readonly kind: "mirror.start";
      readonly source: string;
      readonly dest: string;
      readonly concurrency: number;
      readonly dryRun: boolean;
    }
  | {
      readonly kind: "mirror.file";
      readonly name: string;
      readonly action: "downloaded" | "skipped" | "would-download";
      readonly bytes: number;
    }
  | { readonly kind: "mirror.refused"; readonly name: string; readonly reason: string }
  | { readonly kind: "mirror.failed"; readonly name: string; readonly reason: string }
  | {
      readonly kind: "mirror.retry";
      readonly name: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | { readonly kind: "mirror.delete"; readonly path: string; readonly action: "deleted" | "would-delete" }
  | { readonly kind: "mirror.delete-skipped"; readonly pending: number; readonly reason: string }
  | {
      readonly kind: "mirror.progress";
      readonly listed: number;
      readonly downloaded: number;
      readonly skipped: number;
      readonly failed: number;
      readonly bytes: number;
      /** Bytes of every download decided so far (known in full once `listingDone`). */
      readonly plannedBytes: number;
      readonly listingDone: boolean;
      readonly elapsedMs: number;
    }
  | { readonly kind: "mirror.done"; readonly summary: MirrorSummary };

export interface MirrorOptions {
  /** The bucket side (src/gcp/gcs-objects.ts over the JSON API; test doubles in tests). */
  readonly source: RemoteSource;
  readonly bucket: string;
  /** Object prefix treated as a directory ("" = whole bucket): `PREFIX/x/y` → `dest/x/y`. */
  readonly prefix: string;
  readonly dest: string;
  readonly concurrency?: number;
  /** Delete destination-only files, only after a clean run. */
  readonly delete?: boolean;
  /** With `delete`: refuse to delete more than this many files (nothing is deleted then). */
  readonly maxDelete?: number;
  readonly dryRun?: boolean;
  readonly shard?: { readonly index: number; readonly count: number };
  readonly onEvent?: EventSink<MirrorEvent>;
  readonly signal?: AbortSignal;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  /** fsync each file before its rename (default true). */
  readonly fsync?: boolean;
  /** Leftover temp files older than this are removed (default 60 s; a younger one may be a concurrent run's). */
  readonly staleTempMs?: number;
}

export interface MirrorSummary {
  listed: number;
  downloaded: number;
  skipped: number;
  deleted: number;
  failed: number;
  refused: number;
  bytes: number;
  durationMs: number;
  /** Local files hashed because the manifest could not vouch for them. */
  hashed: number;
  /** Dry run: what would happen. */
  wouldDownload: number;
  wouldDelete: number;
  /** Why `--delete` deleted nothing, if it did not. */
  deleteSkipped?: string;
  /** False when the listing or the local walk stopped early (then nothing is deleted). */
  complete: boolean;
  /** The first 100 failures and refusals, with reasons. */
  failures: Array<{ name: string; reason: string }>;
  /** Set when the destination stopped taking files (full, over quota, read-only): the run stopped there. */
  destinationFault?: string;
}

/** Default parallel downloads; see the README's benchmark for the measurement behind it. */
export const DEFAULT_CONCURRENCY = 32;
const MAX_FAILURES_KEPT = 100;
const PROGRESS_MS = 250;

/**
 * Mirrors `gs://bucket/prefix/` to `dest` (DESIGN §6): the streamed listing and a byte-order walk
 * of `dest` are merged in lock step; each source-only or changed object is downloaded (bounded
 * pool, pinned generation, verified, atomic), unchanged ones are proven equal by the manifest and
 * a stat, destination-only files are deleted only with `delete` after a clean run. Unsafe names
 * are refused and counted, never written. Returns the summary; the caller turns failed/refused
 * into exit 5. Throws only when aborted (after the in-flight work settled and was recorded).
 */
export async function mirror(options: MirrorOptions): Promise<MirrorSummary> {
  const clock = options.clock ?? systemClock;
  const emit = options.onEvent ?? (() => {});
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_CONCURRENCY));
  const dryRun = options.dryRun === true;
  const signal = options.signal;
  const started = clock.now();
  const s: MirrorSummary = {
    listed: 0,
    downloaded: 0,
    skipped: 0,
    deleted: 0,
    failed: 0,
    refused: 0,
    bytes: 0,
    durationMs: 0,
    hashed: 0,
    wouldDownload: 0,
    wouldDelete: 0,
    complete: true,
    failures: [],
  };
  const listPrefix = options.prefix === "" ? "" : `${options.prefix.replace(/\/+$/, "")}/`;
  emit({
    kind: "mirror.start",
    source: `gs://${options.bucket}/${listPrefix}`,
    dest: options.dest,
    concurrency,
    dryRun,
  });

  if (!dryRun) {
    const problem = await destinationProblem(options.dest);
    if (problem !== undefined) throw new DestinationError(options.dest, problem, 0);
  }
  const manifest = Manifest.open(options.dest, { readOnly: dryRun });
  /** Closes the manifest; a full disk failing its last write is recorded, other errors returned. */
  const closeManifest = (): unknown => {
    try {
      manifest.close();
    } catch (err) {
      const fault = destinationFault(err);
      if (fault === undefined) return err;
      s.destinationFault ??= fault;
      s.complete = false;
    }
    return undefined;
  };
  let closeError: unknown;
  /** A credentials/permission/bucket/DNS failure (`fatalFault`): every other object would fail alike. */
  let fatal: Error | undefined;
  const pool = new TaskPool(concurrency);
  const filter = new NameFilter(listPrefix, options.shard);
  const ctx: DownloadContext = {
    source: options.source,
    bucket: options.bucket,
    dest: options.dest,
    guard: new DirectoryGuard(options.dest),
    fsync: options.fsync ?? true,
    clock,
    retry: options.retry,
    signal,
  };
  let plannedBytes = 0;
  let listingDone = false;
  let pendingDeletes = 0;
  let lastTick = started;

  const note = (name: string, reason: string) => {
    if (s.failures.length < MAX_FAILURES_KEPT) s.failures.push({ name, reason });
  };
  const refuse = (name: string, reason: string) => {
    s.refused++;
    note(name, reason);
    emit({ kind: "mirror.refused", name, reason });
  };
  const fail = (name: string, reason: string) => {
    s.failed++;
    note(name, reason);
    emit({ kind: "mirror.failed", name, reason });
  };
  const tick = (force = false) => {
    const now = clock.now();
    if (!force && now - lastTick < PROGRESS_MS) return;
    lastTick = now;
    if (!dryRun) {
      try {
        manifest.flush();
      } catch (err) {
        // A full disk fails the manifest's write too: the files stay, the next run re-proves them by hash.
        const fault = destinationFault(err);
        if (fault === undefined) throw err;
        s.destinationFault ??= fault;
        s.complete = false;
      }
    }
    emit({
      kind: "mirror.progress",
      listed: s.listed,
      downloaded: s.downloaded,
      skipped: s.skipped,
      failed: s.failed + s.refused,
      bytes: s.bytes,
      plannedBytes,
      listingDone,
      elapsedMs: now - started,
    });
  };

  async function* accepted(): AsyncGenerator<Accepted> {
    for await (const page of options.source.listPages(options.bucket, listPrefix, signal)) {
      for (const obj of page) {
        const verdict = filter.classify(obj.name);
        if (verdict.kind === "other-shard") continue;
        s.listed++;
        if (verdict.kind === "refuse") refuse(obj.name, verdict.reason);
        else yield { rel: verdict.rel, obj };
      }
    }
    listingDone = true;
  }

  const download = async (obj: RemoteObject, rel: string) => {
    if (dryRun) {
      s.wouldDownload++;
      emit({ kind: "mirror.file", name: obj.name, action: "would-download", bytes: obj.size });
      return;
    }
    plannedBytes += obj.size;
    const written = await downloadObject(
      {
        ...ctx,
        onRetry: (n) =>
          emit({
            kind: "mirror.retry",
            name: obj.name,
            attempt: n.attempt,
            delayMs: n.delayMs,
            reason: messageOf(n.error),
          }),
      },
      obj,
      rel,
    );
    manifest.put({
      name: rel,
      size: obj.size,
      generation: obj.generation,
      crc32c: obj.crc32c,
      md5: obj.md5Hash,
      mtimeNs: written.mtimeNs,
      ino: written.ino,
    });
    s.downloaded++;
    s.bytes += obj.size;
    emit({ kind: "mirror.file", name: obj.name, action: "downloaded", bytes: obj.size });
  };

  const skip = (obj: RemoteObject) => {
    s.skipped++;
    emit({ kind: "mirror.file", name: obj.name, action: "skipped", bytes: 0 });
  };

  /** A source object: stat the local file if the walk saw one, decide, act. Never rejects. */
  const handle = async ({ rel, obj }: Accepted, local: LocalEntry | undefined) => {
    try {
      const file = path.join(options.dest, rel);
      const state = local === undefined ? undefined : await statLocal(file, local.type);
      const entry = state === undefined ? undefined : manifest.get(rel);
      const d = decide(obj, state, entry);
      if (d.action === "refuse") return refuse(obj.name, d.reason);
      if (d.action === "skip") {
        if (d.record && !dryRun) manifest.put({ ...entry!, generation: obj.generation });
        return skip(obj);
      }
      if (d.action === "hash") {
        s.hashed++;
        const got = await hashLocal(file, { crc32c: obj.crc32c !== undefined, md5: obj.crc32c === undefined });
        if (got.bytes === obj.size && sameContent(obj, got)) {
          if (!dryRun)
            manifest.put({
              name: rel,
              size: obj.size,
              generation: obj.generation,
              crc32c: obj.crc32c,
              md5: obj.md5Hash,
              mtimeNs: state!.mtimeNs,
              ino: state!.ino,
            });
          return skip(obj);
        }
      }
      await download(obj, rel);
    } catch (err) {
      if (signal?.aborted === true) return;
      const fault = destinationFault(err);
      if (fault !== undefined) {
        // Full or read-only: every further write would fail the same way; stop queueing.
        s.destinationFault ??= fault;
        s.complete = false;
        return;
      }
      const stop = fatalFault(err, "object");
      if (stop !== undefined) {
        fatal ??= stop;
        return;
      }
      if (err instanceof UnsafeNameError)
        refuse(obj.name, err.message.replace(/^refusing unsafe name "(?:[^"\\]|\\.)*": /, ""));
      else fail(obj.name, `${messageOf(err)}${isRetryable(err) ? " (gave up after retries)" : ""}`);
    } finally {
      tick();
    }
  };

  /** A destination-only entry. */
  const extra = async (local: LocalEntry) => {
    const file = path.join(options.dest, local.rel);
    const what = decideExtra(local, listPrefix + local.rel, { delete: options.delete === true, shard: options.shard });
    if (what === "remove-temp" && !dryRun) {
      const st = await lstat(file).catch(() => undefined);
      // A young one may be a concurrent writer's, unless its writer is known dead (a killed run).
      if (
        st !== undefined &&
        (clock.now() - st.mtimeMs >= (options.staleTempMs ?? 60_000) || tempWriterGone(path.basename(file)))
      )
        await unlink(file).catch(() => {});
    } else if (what === "delete") {
      pendingDeletes++;
      if (dryRun) {
        s.wouldDelete++;
        emit({ kind: "mirror.delete", path: local.rel, action: "would-delete" });
      } else manifest.addPendingDelete(local.rel);
    }
  };

  try {
    try {
      for await (const pair of march(accepted(), walkLocal(options.dest, signal))) {
        signal?.throwIfAborted();
        if (s.destinationFault !== undefined || fatal !== undefined) break;
        if (pair.remote === undefined) await extra(pair.local);
        else {
          const { remote, local } = pair;
          await pool.run(() => handle(remote, local));
        }
      }
    } catch (err) {
      await pool.drain();
      if (signal?.aborted === true) throw signal.reason ?? err;
      s.complete = false;
      fatal ??= fatalFault(err);
      if (fatal !== undefined) throw fatal;
      fail(`gs://${options.bucket}/${listPrefix}`, `listing or local walk stopped: ${messageOf(err)}`);
    }
    await pool.drain();
    signal?.throwIfAborted();
    if (fatal !== undefined) throw fatal;
    if (options.delete === true && pendingDeletes > 0 && !dryRun)
      await applyDeletes(manifest, options, s, pendingDeletes, emit);
  } finally {
    closeError = closeManifest();
  }
  if (closeError !== undefined) throw closeError;
  s.durationMs = clock.now() - started;
  tick(true);
  emit({ kind: "mirror.done", summary: s });
  return s;
}

async function applyDeletes(
  manifest: Manifest,
  options: MirrorOptions,
  s: MirrorSummary,
  pending: number,
  emit: EventSink<MirrorEvent>,
): Promise<void> {
  const blocker = deleteBlocker(s, pending, options.maxDelete);
  if (blocker !== undefined) {
    s.deleteSkipped = blocker;
    emit({ kind: "mirror.delete-skipped", pending, reason: blocker });
    return;
  }
  for (const rel of manifest.pendingDeletes()) {
    options.signal?.throwIfAborted();
    try {
      // unlink never follows a symlink: a planted link is removed, not its target.
      await unlink(path.join(options.dest, rel));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        s.failed++;
        if (s.failures.length < MAX_FAILURES_KEPT)
          s.failures.push({ name: rel, reason: `delete failed: ${messageOf(err)}` });
        continue;
      }
    }
    manifest.remove(rel);
    s.deleted++;
    emit({ kind: "mirror.delete", path: rel, action: "deleted" });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
