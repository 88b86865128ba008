import { createReadStream, lstatSync } from "node:fs";
import { StreamingHasher, type HashSelection } from "../core/hashing.ts";
import type { LocalEntry } from "./local-walk.ts";
import type { LocalState } from "./plan.ts";

/**
 * lstat of a walked entry as the planner needs it; undefined when it vanished meanwhile. A
 * synchronous lstat of a file the walk just listed (its inode in cache) is a few microseconds;
 * the promise version's thread-pool round trip was most of a no-op re-sync's per-file cost.
 */
export async function statLocal(file: string, type: LocalEntry["type"]): Promise<LocalState | undefined> {
  return statLocalSync(file, type);
}

/** {@link statLocal} without the promise. */
export function statLocalSync(file: string, type: LocalEntry["type"]): LocalState | undefined {
  const st = lstatSync(file, { bigint: true, throwIfNoEntry: false });
  if (st === undefined) return undefined;
  return {
    type: st.isSymbolicLink() ? "symlink" : st.isFile() ? type : "other",
    size: Number(st.size),
    mtimeNs: String(st.mtimeNs),
    ino: String(st.ino),
  };
}

/** Streams a local file through the selected digests (GCS encodings). */
export async function hashLocal(
  file: string,
  select: HashSelection,
): Promise<{ bytes: number; crc32c?: string; md5?: string }> {
  const hasher = new StreamingHasher(select);
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hasher.update(chunk as Buffer);
  return hasher.digest();
}
