import { DirectoryGuard } from "../core/directory-guard.ts";
import { abortWith } from "../core/abort.ts";
import { barrierFor } from "../core/barrier.ts";
import { systemClock } from "../core/clock.ts";
import { destinationProblem } from "../core/destination.ts";
import { asDestinationError, DestinationError, fatalFault } from "../core/errors.ts";
import { Gate } from "../core/gate.ts";
import { applyDeletes } from "./apply-deletes.ts";
import { createStager } from "../core/stage-pool.ts";
import { CommitQueue } from "./commit-queue.ts";
import { defaultBudgetMs, type DownloadContext } from "./download.ts";
import { handleExtra } from "./extras.ts";
import { listAccepted, placeholderDirectory } from "./listing.ts";
import { probeLocal } from "./local-probe.ts";
import { walkLocal, type LocalEntry } from "./local-walk.ts";
import { Manifest } from "./manifest.ts";
import { EmptySourceError, type MirrorEvent, type MirrorOptions, type MirrorSummary } from "./mirror-types.ts";
import { NameFilter, march } from "./plan.ts";
import { ListingError } from "./ports.ts";
import { closeManifest, messageOf, MirrorTally } from "./tally.ts";
import { TaskPool } from "./task-pool.ts";
import { transferOne } from "./transfer.ts";

export { EmptySourceError, type MirrorEvent, type MirrorOptions, type MirrorSummary } from "./mirror-types.ts";

/** Default parallel downloads; see the README's benchmark for the measurement behind it. */
export const DEFAULT_CONCURRENCY = 32;

/**
 * Objects in the transfer stage per connection: one in the network (its request and body), one
 * making its directories or being verified and written. With only the first, every connection
 * idled through its object's mkdirs and write: 10,000 × 150 KB with 20 ms per response took
 * 11.6–12.0 s, with two 9.5–10.3 s (interleaved; the full bench: 11.76 → 8.27 s). Three: within
 * the noise of two (README, "Realistic network").
 */
export const TRANSFER_DEPTH = 2;

/**
 * Mirrors `gs://bucket/prefix/` to `dest` (DESIGN §6) as stages, like rclone's march → checkers →
 * transfers → deleters: the listing (listing.ts) and a byte-order walk of `dest` are merged in
 * lock step (plan.ts `march`); each listed object is checked (check.ts) and, when missing or
 * changed, downloaded into a verified temp file (download.ts) by a bounded pool (transfer.ts);
 * the commit stage (commit-queue.ts) makes batches durable, renames them and writes their manifest
 * rows; destination-only files are handled by extras.ts and deleted only with `delete` after a
 * clean run (apply-deletes.ts). Returns the summary; the caller turns failed/refused into exit 5.
 * Throws only when aborted (after the in-flight work settled and was committed).
 */
export async function mirror(options: MirrorOptions): Promise<MirrorSummary> {
  const clock = options.clock ?? systemClock;
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_CONCURRENCY));
  const dryRun = options.dryRun === true;
  const signal = options.signal;
  const listPrefix = options.prefix === "" ? "" : `${options.prefix.replace(/\/+$/, "")}/`;
  const emit = options.onEvent ?? (() => {});
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
  const manifest = openManifest(options.dest, dryRun, emit);
  const tally = new MirrorTally(emit, clock, dryRun ? () => {} : () => manifest.flush());
  const s = tally.s;
  let tempsLeft = false;
  const ctx: DownloadContext = {
    source: options.source,
    bucket: options.bucket,
    dest: options.dest,
    guard: new DirectoryGuard(options.dest),
    clock,
    retry: options.retry,
    // The user's interrupt, or the run stopping (a fatal fault, a full disk): no new request either way.
    signal: tally.halt.signal,
    budgetMs: options.idleTimeoutMs === undefined ? undefined : defaultBudgetMs(options.idleTimeoutMs),
    durable: options.fsync ?? true,
    stager: dryRun ? undefined : createStager(),
    connections: new Gate(concurrency),
  };
  const queue = new CommitQueue({
    barrier: barrierFor(options.dest, options.fsync ?? true),
    onBatch: () => tally.flush(),
  });
  const pool = new TaskPool(concurrency * TRANSFER_DEPTH);
  const counts = { all: 0 };
  let pendingDeletes = 0;

  const listing = listAccepted(
    options.source,
    options.bucket,
    listPrefix,
    new NameFilter(listPrefix, options.shard),
    {
      listed: () => s.listed++,
      refuse: (n, r) => tally.refuse(n, r),
      directory: placeholderDirectory(ctx.guard, dryRun, tally),
      noHash: () => s.noHash++,
      done: () => (tally.listingDone = true),
    },
    counts,
    signal,
  );
  /** Lets the in-flight transfers settle, then commits what they staged. */
  const settle = async () => {
    await pool.drain();
    await queue.flush();
  };

  // The user's interrupt halts the transfers too (one plain signal for them all; unlinked at the end).
  const unlink = abortWith(signal, tally.halt);
  try {
    try {
      // rclone's --no-traverse, when nothing needs the destination-only files: no --delete, and
      // every run before this one ended cleanly, so no temp file of ours can be there to sweep.
      s.walked = options.delete === true || !manifest.beginRun().previousClean;
      const local = s.walked ? walkLocal(options.dest, signal) : noEntries();
      for await (const pair of march(listing, local)) {
        signal?.throwIfAborted();
        if (tally.stopped) break;
        if (pair.remote === undefined) {
          const done = await handleExtra(pair.local, listPrefix, options, manifest, tally, clock);
          if (done === "pending-delete") pendingDeletes++;
          else if (done === "temp-left") tempsLeft = true;
        } else {
          const { remote } = pair;
          const found = s.walked ? pair.local : probeLocal(ctx.guard, remote.rel);
          await pool.run(() => transferOne(remote, found, ctx, manifest, queue, tally, dryRun));
        }
      }
    } catch (err) {
      await settle();
      if (signal?.aborted === true) throw signal.reason ?? err;
      // A listing that cannot be trusted (malformed, cycling): exit 1 with its message, delete nothing.
      if (err instanceof ListingError) throw err;
      s.complete = false;
      tally.fatal ??= fatalFault(err);
      if (tally.fatal !== undefined) throw tally.fatal;
      // The manifest's run record on a full disk: reported as the destination fault it is.
      if (!tally.destination(err))
        tally.fail(`gs://${options.bucket}/${listPrefix}`, `listing or local walk stopped: ${messageOf(err)}`);
    }
    await settle();
    signal?.throwIfAborted();
    if (tally.fatal !== undefined) throw tally.fatal;
    // rclone: "directory not found". A typo'd prefix must not empty DIR.
    if (options.delete === true && counts.all === 0 && s.complete && options.allowEmptySource !== true)
      throw new EmptySourceError(`gs://${options.bucket}/${listPrefix}`);
    if (options.delete === true && pendingDeletes > 0 && !dryRun)
      await applyDeletes(manifest, options, s, pendingDeletes, emit);
    // Every temp file this run made is renamed or removed by now (a failed download removes its
    // own); one it found and had to leave (a live writer's), or one a stage thread that stopped
    // may have left, keeps the next run walking. A walk that left none also clears the rows of
    // dead runs it swept after.
    if (!dryRun && !tempsLeft && ctx.stager?.lost !== true && s.complete && s.destinationFault === undefined) {
      try {
        manifest.endRun({ swept: s.walked });
      } catch (err) {
        // Not recorded (a full disk, reported as the destination fault it is): the next run walks.
        if (!tally.destination(err)) throw err;
      }
    }
  } finally {
    // In-flight work is committed even when aborting: its temp files are verified.
    await settle().catch(() => {});
    unlink(); // no transfer is left to stop
    await ctx.stager?.close();
    closeManifest(manifest, tally);
  }
  s.durationMs = tally.elapsedMs;
  tally.tick(true);
  emit({ kind: "mirror.done", summary: s });
  return s;
}

/**
 * The destination's manifest; a disk too full (or read-only) to create or open it is the
 * destination fault it is (exit 1, the path and the fix named), not SQLite's "database or disk is
 * full".
 */
function openManifest(dest: string, dryRun: boolean, emit: (e: MirrorEvent) => void): Manifest {
  try {
    return Manifest.open(dest, { readOnly: dryRun, onReset: (r) => emit({ kind: "mirror.manifest-reset", ...r }) });
  } catch (err) {
    throw asDestinationError(err, dest, 0);
  }
}

/** The destination side when it is not walked: nothing but what the probe finds per name. */
async function* noEntries(): AsyncGenerator<LocalEntry> {}
