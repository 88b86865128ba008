import { lstatSync, readdirSync } from "node:fs";
import { lstat, mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { DirectoryGuard } from "../core/directory-guard.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { destinationProblem } from "../core/destination.ts";
import { asDestinationError, DestinationError, destinationFault } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { withRetry, type RetryPolicy } from "../core/retry.ts";
import { RESERVED_DIR } from "../core/safe-path.ts";
import { STALE_TEMP_MS, sweepTempFiles } from "../core/temp-sweep.ts";
import { barrierFor } from "../core/barrier.ts";
import { createStager, stageThreadsFromEnv } from "../core/stage-pool.ts";
import { CommitQueue } from "../mirror/commit-queue.ts";
import { TaskPool } from "../mirror/task-pool.ts";
import { instancePath } from "./land.ts";
import { ACCEPT_SINGLE, retrieveGroup, retrieveInstance, type RetrieveContext, type WadoPort } from "./retrieve.ts";
import { listInstances, type InstanceRef, type QidoPort, type SearchEvent } from "./search.ts";
import { listSubset, type Subset } from "./subset.ts";

export type DicomwebSource = QidoPort & WadoPort;

/** How instances are retrieved: one request each, or one multipart request per series or study. */
export type RetrieveMode = "instance" | "series" | "study";

export const DEFAULT_PAGE_SIZE = 1000;
export const DEFAULT_DICOMWEB_CONCURRENCY = 16;

export type PullEvent =
  | SearchEvent
  | {
      readonly kind: "dicomweb.start";
      readonly source: string;
      readonly dest: string;
      readonly mode: RetrieveMode;
      readonly concurrency: number;
    }
  | {
      readonly kind: "dicomweb.progress";
      readonly listed: number;
      readonly downloaded: number;
      readonly skipped: number;
      readonly failed: number;
      readonly bytes: number;
      readonly listingDone: boolean;
      readonly elapsedMs: number;
    }
  | { readonly kind: "dicomweb.refused"; readonly name: string; readonly reason: string }
  | { readonly kind: "dicomweb.failed"; readonly name: string; readonly reason: string }
  | {
      readonly kind: "dicomweb.retry";
      readonly name: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | { readonly kind: "dicomweb.negotiated"; readonly accept: string; readonly reason: string }
  | { readonly kind: "dicomweb.done"; readonly summary: PullSummary };

export interface PullOptions {
  readonly source: DicomwebSource;
  /** For messages only (e.g. the redacted base URL or the store name). */
  readonly label: string;
  readonly dest: string;
  readonly pageSize?: number;
  readonly concurrency?: number;
  readonly mode?: RetrieveMode;
  readonly search?: "auto" | "instances" | "studies";
  /** Only these studies/series/instances (and filters): listed per scope instead of the whole store. */
  readonly subset?: Subset;
  /** Durability barriers around each commit batch, as the mirror's (default true; false: `--no-fsync`). */
  readonly fsync?: boolean;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  readonly onEvent?: EventSink<PullEvent>;
  readonly signal?: AbortSignal;
  /** Cut an instance body longer than this when the server gives no Content-Length (default 8 GiB). */
  readonly maxInstanceBytes?: number;
  /** Stage threads for the writes (stage-pool.ts; default `HCX_STAGE_THREADS`, else none: see below). */
  readonly stageThreads?: number;
}

export interface PullSummary {
  listed: number;
  downloaded: number;
  /** Already complete on disk (a file only ever appears there whole and verified). */
  skipped: number;
  failed: number;
  refused: number;
  bytes: number;
  /** Downloads whose bytes were checked against a digest the server sent (the rest: structure and UIDs). */
  digestVerified: number;
  retrieveRequests: number;
  durationMs: number;
  /** The first 100 failures and refusals, with reasons. */
  problems: Array<{ name: string; reason: string }>;
  /** Set when the destination stopped taking files (full, over quota, read-only): the run stopped there. */
  destinationFault?: string;
}

const PROGRESS_MS = 250;
/**
 * `dicomweb pull`: lists every instance with QIDO-RS (`search.ts`) and retrieves the missing ones
 * with WADO-RS in parallel, each verified (Part 10 structure, the UIDs it was asked for, any digest
 * the server sends) and written atomically. Rerun, it downloads only what is not on disk yet.
 */
export async function pull(o: PullOptions): Promise<PullSummary> {
  const clock = o.clock ?? systemClock;
  const started = clock.now();
  const mode = o.mode ?? "instance";
  const concurrency = o.concurrency ?? DEFAULT_DICOMWEB_CONCURRENCY;
  const emit = o.onEvent ?? (() => {});
  const dest = path.resolve(o.dest);
  const guard = new DirectoryGuard(dest);
  const s: PullSummary = {
    listed: 0,
    downloaded: 0,
    skipped: 0,
    failed: 0,
    refused: 0,
    bytes: 0,
    digestVerified: 0,
    retrieveRequests: 0,
    durationMs: 0,
    problems: [],
  };
  let listingDone = false;
  let lastTick = 0;
  const note = (name: string, reason: string) => {
    if (s.problems.length < 100) s.problems.push({ name, reason });
  };
  const tick = (force = false) => {
    const now = clock.now();
    if (!force && now - lastTick < PROGRESS_MS) return;
    lastTick = now;
    emit({
      kind: "dicomweb.progress",
      listed: s.listed,
      downloaded: s.downloaded,
      skipped: s.skipped,
      failed: s.failed + s.refused,
      bytes: s.bytes,
      listingDone,
      elapsedMs: now - started,
    });
  };
  emit({ kind: "dicomweb.start", source: o.label, dest, mode, concurrency });
  const problem = await destinationProblem(dest);
  if (problem !== undefined) throw new DestinationError(dest, problem, 0);
  // A run marks the destination while it writes; a mark left behind means it was killed, and its
  // temp files (older than a minute: a younger one may be a concurrent run's) are swept.
  const marker = path.join(dest, RESERVED_DIR, "dicomweb-pull.running");
  try {
    await guard.ensure([], dest);
    if (await exists(marker)) await sweepTempFiles(dest, STALE_TEMP_MS);
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, `${process.pid} ${new Date(started).toISOString()}\n`);
  } catch (err) {
    // A disk too full (or read-only) for the mark: the destination fault, with the path and the fix.
    throw asDestinationError(err, dest, 0);
  }

  const studyBefore = presentAtStart(dest);
  const pool = new TaskPool(concurrency);
  /** A full or read-only destination stops the run: every further write would fail the same way. */
  const stopOn = (err: unknown): boolean => {
    // Interrupted: not a failure of this instance; pull throws the interruption after the pool drains.
    if (o.signal?.aborted === true) return true;
    const fault = destinationFault(err);
    if (fault !== undefined) s.destinationFault ??= fault;
    return fault !== undefined;
  };
  const failed = (name: string, err: unknown) => {
    if (stopOn(err)) return;
    s.failed++;
    note(name, reasonOf(err));
    emit({ kind: "dicomweb.failed", name, reason: reasonOf(err) });
  };
  // The mirror's commit stage: instances land in batches behind one barrier (no manifest here).
  const queue = new CommitQueue({ barrier: barrierFor(dest, o.fsync ?? true) });
  // The mirror's write path (stage-pool.ts) with the mirror's stage threads (HCX_STAGE_THREADS to
  // change): the page-cache copy then runs off the thread that receives. On disk while the page
  // cache reclaims, 10,000 × 150 KB, 4 interleaved rounds: 7.85–10.65 s with one thread,
  // 9.42–12.50 s without (on tmpfs, or with a cache just dropped, level). Its cost, the thread's
  // isolate and malloc arena, fits the pull's 150 MiB target since the launcher's one arena.
  const stager = createStager(o.stageThreads ?? stageThreadsFromEnv());
  const ctx: RetrieveContext = {
    source: o.source,
    dest,
    guard,
    queue,
    stager,
    commitFailed: failed,
    accept: ACCEPT_SINGLE,
    summary: s,
    emit,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
    ...(o.maxInstanceBytes === undefined ? {} : { maxInstanceBytes: o.maxInstanceBytes }),
  };
  // Every attempt in flight, until it settles: an interruption makes the retry loop give up at
  // once, while its attempt may still be receiving or writing (on a stage thread); pull waits for
  // them before its last commit, so that nothing lands after it returns and no temp file is left.
  const attempts = new Set<Promise<unknown>>();
  const tracked =
    <T>(fn: () => Promise<T>) =>
    () => {
      const p = fn();
      const settled: Promise<unknown> = p.then(
        () => attempts.delete(settled),
        () => attempts.delete(settled),
      );
      attempts.add(settled);
      return p;
    };
  const retry = <T>(name: string, fn: () => Promise<T>) =>
    withRetry(tracked(fn), {
      clock,
      ...(o.retry === undefined ? {} : { policy: o.retry }),
      ...(o.signal === undefined ? {} : { signal: o.signal }),
      onRetry: (n) =>
        emit({ kind: "dicomweb.retry", name, attempt: n.attempt, delayMs: n.delayMs, reason: reasonOf(n.error) }),
    });
  const groups = new Map<string, { path: string; scope: InstanceRef; missing: Map<string, InstanceRef> }>();

  const listOptions = {
    pageSize: o.pageSize ?? DEFAULT_PAGE_SIZE,
    strategy: o.search ?? "auto",
    onEvent: emit,
    ...(o.signal === undefined ? {} : { signal: o.signal }),
  };
  const listing =
    o.subset === undefined ? listInstances(o.source, listOptions) : listSubset(o.source, o.subset, listOptions);
  try {
    for await (const listed of listing) {
      if (!listed.ok) {
        s.refused++;
        note(listed.name, listed.reason);
        emit({ kind: "dicomweb.refused", name: listed.name, reason: listed.reason });
        continue;
      }
      if (s.destinationFault !== undefined) break;
      s.listed++;
      const ref = listed.ref;
      if (isComplete(dest, ref, studyBefore)) {
        s.skipped++;
        tick();
        continue;
      }
      if (mode === "instance") {
        await pool.run(async () => {
          try {
            await retry(instancePath(ref), () => retrieveInstance(ctx, ref));
          } catch (err) {
            failed(instancePath(ref), err);
          }
          tick();
        });
      } else {
        const key = mode === "series" ? `${ref.study}/${ref.series}` : ref.study;
        let g = groups.get(key);
        if (g === undefined) {
          g = {
            path: mode === "series" ? `studies/${ref.study}/series/${ref.series}` : `studies/${ref.study}`,
            scope: ref,
            missing: new Map(),
          };
          groups.set(key, g);
        }
        g.missing.set(ref.instance, ref);
      }
    }
    listingDone = true;
    for (const g of groups.values()) {
      if (s.destinationFault !== undefined) break;
      await pool.run(async () => {
        try {
          await retry(g.path, () =>
            retrieveGroup(
              ctx,
              g.path,
              mode === "series" ? { study: g.scope.study, series: g.scope.series } : { study: g.scope.study },
              g.missing,
            ),
          );
        } catch (err) {
          if (stopOn(err)) return;
          for (const ref of g.missing.values()) {
            s.failed++;
            note(instancePath(ref), reasonOf(err));
            emit({ kind: "dicomweb.failed", name: instancePath(ref), reason: reasonOf(err) });
          }
        }
        tick();
      });
    }
  } finally {
    // Also when the listing stops (interrupted): nothing in flight lands after pull returns.
    await pool.drain();
    while (attempts.size > 0) await Promise.allSettled([...attempts]);
    // In-flight instances are committed even when interrupted: their temp files are verified.
    await queue.flush();
    await stager.close();
  }
  o.signal?.throwIfAborted();
  // A stage thread that stopped mid-write may have left a temp file: the mark stays, and the next
  // run sweeps it.
  if (!stager.lost) await rm(marker, { force: true });
  s.durationMs = clock.now() - started;
  tick(true);
  emit({ kind: "dicomweb.done", summary: s });
  return s;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

/**
 * Whether the instance is already a non-empty file under `dest` (a file only ever appears under
 * its final name complete and verified, so existing = done). A study directory that was not there
 * when the run started holds nothing from before it, so its instances are not looked up: into an
 * empty destination, 10,000 lookups of missing names, each waiting for the directory's lock
 * behind the stage thread's mkdirs in it, cost the main thread 1.0 s (cpu-prof). The rest: a
 * synchronous `lstat` that returns undefined for a missing file, as the mirror's `statLocal` (the
 * promise API's rejection, an Error with its stack per instance not yet pulled, cost ~0.1 ms each).
 */
function isComplete(dest: string, ref: InstanceRef, studyBefore: (study: string) => boolean): boolean {
  if (!studyBefore(ref.study)) return false;
  try {
    const st = lstatSync(path.join(dest, instancePath(ref)), { throwIfNoEntry: false });
    return st !== undefined && st.isFile() && st.size > 0;
  } catch {
    return false;
  }
}

/** Whether a name was in `dir` as the run started (unreadable: every name may have been). */
function presentAtStart(dir: string): (name: string) => boolean {
  try {
    const names = new Set(readdirSync(dir));
    return (name) => names.has(name);
  } catch {
    return () => true;
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message !== err.message ? `${err.message} (${cause.message})` : err.message;
  }
  return String(err);
}
