import { createReadStream } from "node:fs";
import { lstat } from "node:fs/promises";
import { StreamingHasher, type HashSelection } from "../core/hashing.ts";
import type { LocalEntry } from "./local-walk.ts";
import type { LocalState } from "./plan.ts";

/** lstat of a walked entry as the planner needs it; undefined when it vanished meanwhile. */
export async function statLocal(file: string, type: LocalEntry["type"]): Promise<LocalState | undefined> {
  try {
    const st = await lstat(file, { bigint: true });
    return {
      type: st.isSymbolicLink() ? "symlink" : st.isFile() ? type : "other",
      size: Number(st.size),
      mtimeNs: String(st.mtimeNs),
      ino: String(st.ino),
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
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
