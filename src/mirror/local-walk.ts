import type { Dirent } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";
import { compareUtf8 } from "../core/utf8-order.ts";
import { RESERVED_DIR, TEMP_MARKER } from "../core/safe-path.ts";

/** One non-directory entry of the destination tree. */
export interface LocalEntry {
  /** Path relative to the root, `/`-separated. */
  readonly rel: string;
  /** `temp`: a leftover `.hcx-tmp-` file of an interrupted run (ours to remove). */
  readonly type: "file" | "symlink" | "other" | "temp";
}

/**
 * The sort key that makes a depth-first walk yield full relative paths in UTF-8 byte order, the
 * order GCS lists names in: a directory `a` sorts as `a/`. Otherwise `a-b` (0x2d) would come after
 * everything under `a/` (0x2f) although it sorts before it.
 */
export function walkKey(name: string, isDirectory: boolean): string {
  return isDirectory ? `${name}/` : name;
}

/**
 * Streams the files below `root` in UTF-8 byte order of their relative paths. Memory holds the sorted
 * listings of the directories on the current path and a few siblings read ahead (never the whole tree). Symlinks are reported,
 * never followed; the reserved `.hcexport/` directory at the root is skipped. A missing root is an
 * empty tree.
 */
export async function* walkLocal(root: string, signal?: AbortSignal): AsyncGenerator<LocalEntry> {
  yield* walkDir(root, "", readSorted(root), signal);
}

/**
 * How many upcoming sibling directories are listed ahead, in parallel: a sequential walk of a
 * SIIM-shaped tree (two new directories per file) waits on one readdir at a time.
 */
const LOOKAHEAD = 16;

async function* walkDir(
  root: string,
  relDir: string,
  listing: Promise<Listing>,
  signal: AbortSignal | undefined,
): AsyncGenerator<LocalEntry> {
  signal?.throwIfAborted();
  const entries = await listing;
  const subdirs: number[] = [];
  entries.forEach((e, i) => {
    if (e.isDirectory() && !(relDir === "" && e.name === RESERVED_DIR)) subdirs.push(i);
  });
  const ahead = new Map<number, Promise<Listing>>();
  let nextToStart = 0;
  for (let i = 0; i < entries.length; i++) {
    const dirent = entries[i]!;
    const name = dirent.name;
    const rel = relDir === "" ? name : `${relDir}/${name}`;
    if (dirent.isDirectory()) {
      if (relDir === "" && name === RESERVED_DIR) continue;
      while (nextToStart < subdirs.length && ahead.size < LOOKAHEAD) {
        const j = subdirs[nextToStart++]!;
        const p = readSorted(path.join(root, relDir, entries[j]!.name));
        p.catch(() => {}); // observed when its turn comes
        ahead.set(j, p);
      }
      const listing = ahead.get(i)!;
      ahead.delete(i);
      yield* walkDir(root, rel, listing, signal);
    } else if (name.includes(TEMP_MARKER)) yield { rel, type: "temp" };
    else if (dirent.isSymbolicLink()) yield { rel, type: "symlink" };
    else if (dirent.isFile()) yield { rel, type: "file" };
    else yield { rel, type: "other" };
  }
}

type Listing = Dirent[];

async function readSorted(dir: string): Promise<Listing> {
  let dirents: Dirent[];
  try {
    dirents = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Gone meanwhile, or replaced by a file: nothing to walk there.
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw err;
  }
  const keyed = dirents.map((d) => ({ key: walkKey(d.name, d.isDirectory()), d }));
  keyed.sort((a, b) => compareUtf8(a.key, b.key));
  return keyed.map((k) => k.d);
}
