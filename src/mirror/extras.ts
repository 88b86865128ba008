import { lstat, unlink } from "node:fs/promises";
import path from "node:path";
import { tempWriterGone } from "../core/atomic-file.ts";
import type { Clock } from "../core/clock.ts";
import { STALE_TEMP_MS } from "../core/temp-sweep.ts";
import { localPath } from "./apply-deletes.ts";
import type { LocalEntry } from "./local-walk.ts";
import type { Manifest } from "./manifest.ts";
import type { MirrorOptions } from "./mirror-types.ts";
import { decideExtra } from "./plan.ts";
import type { MirrorTally } from "./tally.ts";

/**
 * A destination-only entry (the deleters' input): a leftover temp file is removed once stale or
 * once its writer is known dead (a killed run); with `delete`, another file of this shard is
 * remembered in the manifest for `applyDeletes` after a clean run. Returns whether it is pending
 * deletion.
 */
export async function handleExtra(
  local: LocalEntry,
  listPrefix: string,
  options: MirrorOptions,
  manifest: Manifest,
  tally: MirrorTally,
  clock: Clock,
): Promise<boolean> {
  const dryRun = options.dryRun === true;
  const file = localPath(options.dest, local.raw ?? local.rel);
  const what = decideExtra(local, listPrefix + local.rel, { delete: options.delete === true, shard: options.shard });
  if (what === "remove-temp" && !dryRun) {
    const st = await lstat(file).catch(() => undefined);
    // A young one may be a concurrent writer's, unless its writer is known dead (a killed run).
    if (
      st !== undefined &&
      (clock.now() - st.mtimeMs >= (options.staleTempMs ?? STALE_TEMP_MS) || tempWriterGone(path.basename(local.rel)))
    )
      await unlink(file).catch(() => {});
    return false;
  }
  if (what !== "delete") return false;
  if (dryRun) {
    tally.s.wouldDelete++;
    tally.emit({ kind: "mirror.delete", path: local.rel, action: "would-delete" });
  } else manifest.addPendingDelete(local.raw ?? local.rel);
  return true;
}
