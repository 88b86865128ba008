import path from "node:path";
import { fatalFault, UnsafeNameError } from "../core/errors.ts";
import { isRetryable } from "../core/retry.ts";
import { check } from "./check.ts";
import type { CommitQueue } from "./commit-queue.ts";
import { downloadObject, type DownloadContext } from "./download.ts";
import type { LocalEntry } from "./local-walk.ts";
import { manifestEntry, type Manifest, type ManifestEntry } from "./manifest.ts";
import type { Accepted } from "./plan.ts";
import { messageOf, refusalReason, type MirrorTally } from "./tally.ts";

/**
 * One listed object through the check and transfer stages: check (check.ts), then either a skip,
 * a proven-equal file whose row waits for the next barrier, or a download into a verified temp
 * file (download.ts) handed to the commit stage. The pool slot is freed once the temp file is
 * queued, not committed: downloads go on while a batch syncs. Never rejects; every outcome is in
 * the tally (the file's "downloaded" event fires when its batch commits).
 */
export async function transferOne(
  { rel, obj }: Accepted,
  local: LocalEntry | undefined,
  ctx: DownloadContext,
  manifest: Manifest,
  queue: CommitQueue,
  tally: MirrorTally,
  dryRun: boolean,
): Promise<void> {
  const failed = (err: unknown) => {
    if (ctx.signal?.aborted === true || tally.destination(err)) return;
    const stop = fatalFault(err, "object");
    if (stop !== undefined) tally.stop(stop);
    else if (err instanceof UnsafeNameError) tally.refuse(obj.name, refusalReason(err));
    else tally.fail(obj.name, `${messageOf(err)}${isRetryable(err) ? " (gave up after retries)" : ""}`);
  };
  /** The row, then the count and event; a full disk failing the row is a destination fault (re-hashed next run). */
  const land = (entry: ManifestEntry, counted: () => void) => {
    try {
      manifest.put(entry);
    } catch (err) {
      return failed(err);
    }
    counted();
  };
  try {
    const c = await check({ rel, obj }, local, ctx.dest, manifest);
    if (c.kind === "refuse") return tally.refuse(obj.name, c.reason);
    if (c.kind !== "download") {
      if (c.kind === "proven") tally.s.hashed++;
      if (dryRun) return tally.skipped(obj.name);
      if (c.kind === "skip") {
        if (c.record !== undefined) manifest.put(c.record);
        return tally.skipped(obj.name);
      }
      // Its bytes may still be only in the page cache (a killed run renamed it): the row waits for a barrier.
      return await queue.add({
        dir: path.dirname(path.join(ctx.dest, rel)),
        bytes: 0,
        committed: () => land(c.entry, () => tally.skipped(obj.name)),
        failed,
      });
    }
    if (c.hashed) tally.s.hashed++;
    if (dryRun) {
      tally.s.wouldDownload++;
      tally.emit({ kind: "mirror.file", name: obj.name, action: "would-download", bytes: obj.size });
      return;
    }
    tally.plannedBytes += obj.size;
    const staged = await downloadObject(
      {
        ...ctx,
        onRetry: (n) =>
          tally.emit({
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
    await queue.add({
      staged,
      bytes: obj.size,
      committed: () => land(manifestEntry(rel, obj, staged), () => tally.downloaded(obj.name, obj.size)),
      failed,
    });
  } catch (err) {
    failed(err);
  } finally {
    tally.tick();
  }
}
