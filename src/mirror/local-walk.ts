import { isUtf8 } from "node:buffer";
import type { Dirent } from "node:fs";
import { readdir } from "node:fs/promises";
import { RESERVED_DIR, TEMP_MARKER } from "../core/safe-path.ts";

/** One non-directory entry of the destination tree. */
export interface LocalEntry {
  /** Path relative to the root, `/`-separated (lossy, for display only, when `raw` is set). */
  readonly rel: string;
  /** `temp`: a leftover `.hcx-tmp-` file of an interrupted run (ours to remove). */
  readonly type: "file" | "symlink" | "other" | "temp";
  /**
   * The relative path's raw bytes, set only when they are not valid UTF-8 (Latin-1 leftovers):
   * no object name can match such a file, and it is reached (deleted) only by these bytes.
   */
  readonly raw?: Buffer;
}

const SLASH = Buffer.from("/");
const RESERVED = Buffer.from(RESERVED_DIR);

/**
 * The sort key that makes a depth-first walk yield full relative paths in UTF-8 byte order, the
 * order GCS lists names in: a directory `a` sorts as `a/`. Otherwise `a-b` (0x2d) would come after
 * everything under `a/` (0x2f) although it sorts before it.
 */
export function walkKey(name: Buffer, isDirectory: boolean): Buffer {
  return isDirectory ? Buffer.concat([name, SLASH]) : name;
}

/**
 * Streams the files below `root` in byte order of their relative paths. Names are read and
 * sorted as raw bytes (never decoded lossily: two Latin-1 names would both become `caf\uFFFD`).
 * Memory holds the sorted listings of the directories on the current path and a few siblings
 * read ahead (never the whole tree). Symlinks are reported, never followed; the reserved
 * `.hcexport/` directory at the root is skipped. A missing root is an empty tree.
 */
export async function* walkLocal(root: string, signal?: AbortSignal): AsyncGenerator<LocalEntry> {
  const base = Buffer.from(root);
  yield* walkDir(base, undefined, readSorted(base), signal);
}

/**
 * How many upcoming sibling directories are listed ahead, in parallel: a sequential walk of a
 * SIIM-shaped tree (two new directories per file) waits on one readdir at a time.
 */
const LOOKAHEAD = 16;

async function* walkDir(
  root: Buffer,
  relDir: Buffer | undefined,
  listing: Promise<Listing>,
  signal: AbortSignal | undefined,
): AsyncGenerator<LocalEntry> {
  signal?.throwIfAborted();
  const entries = await listing;
  const atRoot = relDir === undefined;
  const skip = (d: Dirent<Buffer>) => atRoot && d.isDirectory() && d.name.equals(RESERVED);
  const subdirs: number[] = [];
  entries.forEach((e, i) => {
    if (e.isDirectory() && !skip(e)) subdirs.push(i);
  });
  const ahead = new Map<number, Promise<Listing>>();
  let nextToStart = 0;
  for (let i = 0; i < entries.length; i++) {
    const dirent = entries[i]!;
    const relBytes = atRoot ? dirent.name : Buffer.concat([relDir, SLASH, dirent.name]);
    if (dirent.isDirectory()) {
      if (skip(dirent)) continue;
      while (nextToStart < subdirs.length && ahead.size < LOOKAHEAD) {
        const j = subdirs[nextToStart++]!;
        const sub = entries[j]!.name;
        const p = readSorted(Buffer.concat([root, SLASH, ...(atRoot ? [] : [relDir, SLASH]), sub]));
        p.catch(() => {}); // observed when its turn comes
        ahead.set(j, p);
      }
      const listing = ahead.get(i)!;
      ahead.delete(i);
      yield* walkDir(root, relBytes, listing, signal);
      continue;
    }
    const valid = isUtf8(relBytes);
    const rel = relBytes.toString("utf8");
    const raw = valid ? {} : { raw: relBytes };
    if (dirent.name.toString("latin1").includes(TEMP_MARKER)) yield { rel, type: "temp", ...raw };
    else if (dirent.isSymbolicLink()) yield { rel, type: "symlink", ...raw };
    else if (dirent.isFile()) yield { rel, type: "file", ...raw };
    else yield { rel, type: "other", ...raw };
  }
}

type Listing = Dirent<Buffer>[];

async function readSorted(dir: Buffer): Promise<Listing> {
  let dirents: Dirent<Buffer>[];
  try {
    dirents = await readdir(dir, { withFileTypes: true, encoding: "buffer" });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Gone meanwhile, or replaced by a file: nothing to walk there.
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw err;
  }
  const keyed = dirents.map((d) => ({ key: walkKey(d.name, d.isDirectory()), d }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.d);
}
