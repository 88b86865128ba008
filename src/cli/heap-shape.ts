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
export function shapeHeap(command: string | undefined): void {
  if (command !== "emulator") limitOldGenerationGrowth();
  capYoungGeneration();
}

/** Sets the old generation's growth factor to 1 + percent/100 for every limit computed from now on. */
export function limitOldGenerationGrowth(percent: number = OLD_GENERATION_GROWTH_PERCENT): void {
  v8.setFlagsFromString(`--heap-growing-percent=${Math.max(1, Math.round(percent))}`);
}

/** Young-generation (new space) size at which growth stops. */
export const YOUNG_GENERATION_MIB = 16;

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
