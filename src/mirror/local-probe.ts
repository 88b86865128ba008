import path from "node:path";
import type { DirectoryGuard } from "../core/directory-guard.ts";
import { statLocalSync } from "./local-io.ts";
import type { LocalEntry } from "./local-walk.ts";
import type { LocalState } from "./plan.ts";

/** A listed name's local file found by {@link probeLocal}, with the lstat already taken. */
export interface ProbedEntry extends LocalEntry {
  readonly state: LocalState;
}

/**
 * The destination side of one listed name without walking the destination (rclone's
 * `--no-traverse`): its parent directories must each exist as a real directory (checked with
 * `lstat` through the guard, so a planted symlink `DIR/a → /etc` never makes `a/b` resolve
 * outside), then one `lstat` of the file itself. Undefined when there is nothing there or a parent
 * is missing, a symlink or a file: the name is then planned as new, and the write path creates the
 * parent or refuses it exactly as after a walk. Synchronous: a few microseconds per call on a
 * tree in the page cache, less than a promise round trip.
 */
export function probeLocal(guard: DirectoryGuard, rel: string): ProbedEntry | undefined {
  const segments = rel.split("/");
  if (!guard.existsSync(segments.slice(0, -1))) return undefined;
  // `rel` passed the name filter (no `.`, `..`, empty or absolute segment): a join needs no normalising.
  const state = statLocalSync(`${guard.root}${path.sep}${rel}`, "file");
  if (state === undefined) return undefined;
  return { rel, type: state.type, state };
}
