/**
 * V8's heap shaped for a long mirror or pull, so its memory stays flat in the object count (issue #11).
 *
 * Young generation: V8 doubles the new space (up to 2 × 64 MiB on a machine with this much memory)
 * whenever enough bytes survived scavenges since the last growth, which any long run of downloads
 * and listing pages eventually does: at 20,000 objects the new space was 128 of the 250 MiB peak
 * RSS, mostly empty (2 MiB in use). `--max-semi-space-size` would do this, but only on the node
 * command line; the growth factor, though, is read at each growth, so once the new space has
 * reached the cap, a growth factor of 1 keeps it there. Checked after garbage collections (a `gc`
 * performance observer), never on a timer.
 *
 * Old generation: after each full collection V8 sets the next one's limit at the live size times a
 * factor it picks from its own speed, up to 4× on a fast machine. A mirror's live set is small and
 * steady (the listing page, the pool's requests, the guard's recent directories) while everything
 * it promotes dies soon, so the heap grew to 42 MiB of old space around 10 MiB of live objects
 * (20,000 × 16 KB). `--heap-growing-percent` is read whenever a limit is computed: at 30 (a factor
 * of 1.3) the same run peaks at 128 instead of 171 MiB RSS, in the same time (5.3–6.7 s either
 * way, on tmpfs). A big live set is still allowed: the limit follows it, only with less headroom.
 *
 * Marking: with that headroom V8 starts incremental marking as soon as a collection ends (see
 * `startMarkingLate`); for the mirror it starts late instead, and the young generation is capped at
 * 8 MiB rather than 16 (20,000 × 16 KB then peaks at 141 MiB with late marking, 133 before either
 * change; 10,000 × 150 KB copies in 4.9–6.1 instead of 7.3–7.7 s on tmpfs).
 */
import { PerformanceObserver } from "node:perf_hooks";
import v8 from "node:v8";

/** Old-generation headroom over the live size after a full collection, in percent (V8's own: up to 300). */
export const OLD_GENERATION_GROWTH_PERCENT = 30;

/**
 * The young generation capped for every command; the old one's growth limited too, except for
 * `emulator`, which holds its whole dataset in memory (a big live set, where V8's headroom saves
 * full collections) and is not what a user measures.
 */
export function shapeHeap(command: string | undefined, env = process.env): void {
  // The command may follow global options (`--emulator URL mirror …`); a misread one only changes tuning.
  if (command !== "emulator") limitOldGenerationGrowth();
  capYoungGeneration();
  if (LATE_MARKING.has(command ?? "") && env["HCX_MARKING_TRIGGER"] !== "v8") startMarkingLate();
}

/**
 * The commands whose marking starts late: the mirror's, and `dicomweb`'s (the pull; its search and
 * get hold little). The pull's heap is as small as the mirror's, and on V8's own schedule it was
 * marked continuously too: 55–71 full collections in a 10,000 × 150 KB pull against the mirror's
 * 8–11, V8's helper threads using 2.6 s of CPU against 1.2. Late marking used to cost the pull its
 * memory target (146–152 MiB), before the launcher's one arena and QIDO pages parsed a row at a
 * time (json-rows.ts); with both, the pull with its stage thread peaks at 136–140 MiB (README).
 * (It once gained nothing for another reason: socket reads reached the old generation through
 * undici's `rawHeaders`, see `RawHeadersReleased`, and late marking let them pile up to V8's 64
 * MiB external-memory trigger.)
 */
export const LATE_MARKING: ReadonlySet<string> = new Set(["mirror", "run", "dicomweb"]);

/** The commands `shapeHeap` tells apart (looked for anywhere on the command line). */
export const SHAPED_COMMANDS: ReadonlySet<string> = new Set([...LATE_MARKING, "emulator"]);

/**
 * Percent of the way from the last full collection's size to the next limit at which incremental
 * marking starts (V8's `--incremental-marking-soft-trigger`, read at each allocation-limit check).
 */
export const MARKING_TRIGGER_PERCENT = 90;

/**
 * Marking starts only when the old generation has used most of its headroom. V8's own rule
 * (`Heap::IncrementalMarkingLimitReached`) starts it whenever the headroom left is no bigger than
 * the young generation's target capacity; over a small live set the headroom is V8's minimum step,
 * so that held right after every collection and the main heap was marked continuously: 123 full
 * collections in a 10,000-object cold copy, their concurrent marking a quarter of all CPU samples
 * (perf), on a 2-core machine the core the local cloud and the stage thread need. With this
 * trigger: 16–18 collections (measured, README).
 */
export function startMarkingLate(percent: number = MARKING_TRIGGER_PERCENT): void {
  v8.setFlagsFromString(`--incremental-marking-soft-trigger=${Math.min(99, Math.max(1, Math.round(percent)))}`);
}

/** Sets the old generation's growth factor to 1 + percent/100 for every limit computed from now on. */
export function limitOldGenerationGrowth(percent: number = OLD_GENERATION_GROWTH_PERCENT): void {
  v8.setFlagsFromString(`--heap-growing-percent=${Math.max(1, Math.round(percent))}`);
}

/** Young-generation (new space) size at which growth stops. */
export const YOUNG_GENERATION_MIB = 8;

/** Starts watching; returns a function that stops (also stopped once the cap is in place). */
export function capYoungGeneration(maxMiB: number = YOUNG_GENERATION_MIB): () => void {
  const limit = maxMiB * 1024 * 1024;
  const newSpace = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_size ?? 0;
  const freeze = (): void => v8.setFlagsFromString("--semi-space-growth-factor=1");
  if (newSpace() >= limit) {
    freeze();
    return () => {};
  }
  const observer = new PerformanceObserver(() => {
    if (newSpace() < limit) return;
    freeze();
    observer.disconnect();
  });
  observer.observe({ entryTypes: ["gc"] });
  return () => observer.disconnect();
}
