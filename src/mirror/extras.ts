import { lstat, unlink } from "node:fs/promises";
import path from "node:path";
import { tempWriterGone } from "../core/temp-names.ts";
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
 * remembered in the manifest for `applyDeletes` after a clean run. Returns `pending-delete` for
 * such a file, `temp-left` for a temp file still there (young, or a dry run), else `none`.
 */
export async function handleExtra(
  local: LocalEntry,
  listPrefix: string,
  options: MirrorOptions,
  manifest: Manifest,
  tally: MirrorTally,
  clock: Clock,
): Promise<ExtraOutcome> {
  const dryRun = options.dryRun === true;
  const file = localPath(options.dest, local.raw ?? local.rel);
  const what = decideExtra(local, listPrefix + local.rel, { delete: options.delete === true, shard: options.shard });
  if (what === "remove-temp") {
    if (dryRun) return "temp-left";
    const st = await lstat(file).catch(() => undefined);
    if (st === undefined) return "none";
    // A young one may be a concurrent writer's, unless its writer is known dead (a killed run).
    if (clock.now() - st.mtimeMs < (options.staleTempMs ?? STALE_TEMP_MS) && !tempWriterGone(path.basename(local.rel)))
      return "temp-left";
    return (await unlink(file).then(
      () => true,
      (e: NodeJS.ErrnoException) => e.code === "ENOENT",
    ))
      ? "none"
      : "temp-left";
  }
  if (what !== "delete") return "none";
  if (dryRun) {
    tally.s.wouldDelete++;
    tally.emit({ kind: "mirror.delete", path: local.rel, action: "would-delete" });
  } else manifest.addPendingDelete(local.raw ?? local.rel);
  return "pending-delete";
}

/** What {@link handleExtra} did with a destination-only entry. */
export type ExtraOutcome = "pending-delete" | "temp-left" | "none";
