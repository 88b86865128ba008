import { opendir, lstat, unlink } from "node:fs/promises";
import path from "node:path";
import { tempWriterGone } from "./temp-names.ts";
import { RESERVED_DIR, TEMP_MARKER } from "./safe-path.ts";

/** How old a temp file whose writer may still run (another host) must be before a sweep removes it. */
export const STALE_TEMP_MS = 60_000;

/**
 * Removes the temp files an interrupted run left under `root` (names carrying `TEMP_MARKER`),
 * if older than `olderThanMs` or if their writer is known dead (this host, pid gone) — a younger
 * one may belong to a run still going. Never follows
 * symlinks and never enters the reserved `.hcexport/` directory. Returns how many it removed.
 */
export async function sweepTempFiles(root: string, olderThanMs: number, now: number = Date.now()): Promise<number> {
  let removed = 0;
  const visit = async (dir: string): Promise<void> => {
    let handle;
    try {
      handle = await opendir(dir);
    } catch {
      return; // gone meanwhile, or not a directory
    }
    const subdirs: string[] = [];
    for await (const d of handle) {
      const full = path.join(dir, d.name);
      if (d.isDirectory()) {
        if (!(dir === root && d.name === RESERVED_DIR)) subdirs.push(full);
      } else if (d.isFile() && d.name.includes(TEMP_MARKER)) {
        const st = await lstat(full).catch(() => undefined);
        if (
          st !== undefined &&
          (now - st.mtimeMs >= olderThanMs || tempWriterGone(d.name)) &&
          (await unlink(full).then(
            () => true,
            () => false,
          ))
        )
          removed++;
      }
    }
    for (const sub of subdirs) await visit(sub);
  };
  await visit(path.resolve(root));
  return removed;
}
