import { unlink } from "node:fs/promises";
import path from "node:path";
import type { EventSink } from "../core/events.ts";
import type { Manifest } from "./manifest.ts";
import type { MirrorEvent, MirrorOptions, MirrorSummary } from "./mirror-types.ts";
import { deleteBlocker } from "./plan.ts";

/** Failures and refusals kept in the summary, with reasons. */
export const MAX_FAILURES_KEPT = 100;

/**
 * Runs the pending deletes after a clean run (rclone's deleters), within the --max-delete guard.
 * Names that are not valid UTF-8 are unlinked by their raw bytes.
 */
export async function applyDeletes(
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
    const shown = typeof rel === "string" ? rel : rel.toString("utf8");
    try {
      // unlink never follows a symlink: a planted link is removed, not its target.
      await unlink(localPath(options.dest, rel));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        s.failed++;
        if (s.failures.length < MAX_FAILURES_KEPT)
          s.failures.push({ name: shown, reason: `delete failed: ${messageOf(err)}` });
        continue;
      }
    }
    if (typeof rel === "string") manifest.remove(rel);
    s.deleted++;
    emit({ kind: "mirror.delete", path: shown, action: "deleted" });
  }
}

/** The absolute path of a local entry: by its raw bytes when its name is not valid UTF-8. */
export function localPath(dest: string, rel: string | Buffer): string | Buffer {
  if (typeof rel === "string") return path.join(dest, rel);
  return Buffer.concat([Buffer.from(`${path.resolve(dest)}/`), rel]);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
