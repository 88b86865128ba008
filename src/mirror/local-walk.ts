import { isUtf8 } from "node:buffer";
import type { Dirent } from "node:fs";
import { readdirSync } from "node:fs";
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
 * Memory holds the sorted listings of the directories on the current path (never the whole
 * tree). Symlinks are reported, never followed; the reserved `.hcexport/` directory at the root is
 * skipped. A missing root is an empty tree.
 *
 * Each directory is read with one synchronous `readdir` when the walk reaches it: a listing of a
 * directory in the page cache takes a few microseconds, while a promise round trip through
 * libuv's thread pool costs several times that on the main thread, and a no-op re-sync of a
 * SIIM-shaped tree (two directories per file) is mostly these reads.
 */
export async function* walkLocal(root: string, signal?: AbortSignal): AsyncGenerator<LocalEntry> {
  for (const entry of walkSync(Buffer.from(root), signal)) yield entry;
}

/** The synchronous walk behind {@link walkLocal}. */
export function* walkSync(root: Buffer, signal?: AbortSignal): Generator<LocalEntry> {
  yield* walkDir(root, undefined, "", true, signal);
}

/**
 * @param abs the directory's path (bytes); `relBytes`/`rel` its path below the root (undefined/""
 * at the root); `valid` whether `relBytes` is valid UTF-8 (then `rel` is exact).
 */
function* walkDir(
  abs: Buffer,
  relBytes: Buffer | undefined,
  rel: string,
  valid: boolean,
  signal: AbortSignal | undefined,
): Generator<LocalEntry> {
  signal?.throwIfAborted();
  const entries = readSorted(abs);
  const atRoot = relBytes === undefined;
  for (const dirent of entries) {
    const name = dirent.name;
    const nameValid = valid && isUtf8(name);
    const childRel = nameValid ? (atRoot ? name.toString("utf8") : `${rel}/${name.toString("utf8")}`) : undefined;
    const childBytes = nameValid ? undefined : atRoot ? name : Buffer.concat([relBytes, SLASH, name]);
    if (dirent.isDirectory()) {
      if (atRoot && name.equals(RESERVED)) continue;
      const bytes = childBytes ?? (atRoot ? name : Buffer.concat([relBytes, SLASH, name]));
      yield* walkDir(Buffer.concat([abs, SLASH, name]), bytes, childRel ?? bytes.toString("utf8"), nameValid, signal);
      continue;
    }
    const relText = childRel ?? childBytes!.toString("utf8");
    const raw = childBytes === undefined ? {} : { raw: childBytes };
    if (name.includes(TEMP_MARKER, 0, "latin1")) yield { rel: relText, type: "temp", ...raw };
    else if (dirent.isSymbolicLink()) yield { rel: relText, type: "symlink", ...raw };
    else if (dirent.isFile()) yield { rel: relText, type: "file", ...raw };
    else yield { rel: relText, type: "other", ...raw };
  }
}

type Listing = Dirent<Buffer>[];

function readSorted(dir: Buffer): Listing {
  let dirents: Dirent<Buffer>[];
  try {
    dirents = readdirSync(dir, { withFileTypes: true, encoding: "buffer" });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Gone meanwhile, or replaced by a file: nothing to walk there.
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw err;
  }
  if (dirents.length < 2) return dirents;
  const keyed = dirents.map((d) => ({ key: walkKey(d.name, d.isDirectory()), d }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.d);
}
