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

/**
 * The sort key that makes a depth-first walk yield full relative paths in UTF-8 byte order, the
 * order GCS lists names in: a directory `a` sorts as `a/`. Otherwise `a-b` (0x2d) would come after
 * everything under `a/` (0x2f) although it sorts before it. Names are latin1 strings (one
 * character per byte), so comparing keys as strings compares their bytes.
 */
export function walkKey(name: string, isDirectory: boolean): string {
  return isDirectory ? `${name}/` : name;
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
 * SIIM-shaped tree (two directories per file) is mostly these reads. (A walk on its own worker
 * thread was measured too: its ~50 ms start-up and the extra CPU on a 2-core machine made the
 * no-op slower, median 1.02 s against 0.94 s over 8 runs.)
 */
export async function* walkLocal(root: string, signal?: AbortSignal): AsyncGenerator<LocalEntry> {
  for (const entry of walkSync(Buffer.from(root), signal)) yield entry;
}

/** The synchronous walk behind {@link walkLocal}. */
export function* walkSync(root: Buffer, signal?: AbortSignal): Generator<LocalEntry> {
  yield* walkDir(root.toString("latin1"), undefined, "", true, signal);
}

/**
 * Paths and names are read as latin1 strings, one character per byte, which keeps the exact
 * bytes and makes string order byte order; they are decoded as UTF-8 only for `rel`.
 * @param abs the directory's path (latin1); `relBytes`/`rel` its path below the root (latin1,
 * undefined at the root / decoded, "" at the root); `valid` whether `relBytes` is valid UTF-8
 * (then `rel` is exact).
 */
function* walkDir(
  abs: string,
  relBytes: string | undefined,
  rel: string,
  valid: boolean,
  signal: AbortSignal | undefined,
): Generator<LocalEntry> {
  signal?.throwIfAborted();
  const entries = readSorted(abs);
  const atRoot = relBytes === undefined;
  for (const dirent of entries) {
    const name = dirent.name;
    const text = valid ? utf8Of(name) : undefined;
    const childRel = text === undefined ? undefined : atRoot ? text : `${rel}/${text}`;
    const childBytes = atRoot ? name : `${relBytes}/${name}`;
    if (dirent.isDirectory()) {
      if (atRoot && name === RESERVED_DIR) continue;
      yield* walkDir(`${abs}/${name}`, childBytes, childRel ?? lossyUtf8(childBytes), text !== undefined, signal);
      continue;
    }
    const relText = childRel ?? lossyUtf8(childBytes);
    const raw = childRel === undefined ? { raw: Buffer.from(childBytes, "latin1") } : {};
    if (name.includes(TEMP_MARKER)) yield { rel: relText, type: "temp", ...raw };
    else if (dirent.isSymbolicLink()) yield { rel: relText, type: "symlink", ...raw };
    else if (dirent.isFile()) yield { rel: relText, type: "file", ...raw };
    else yield { rel: relText, type: "other", ...raw };
  }
}

/** A byte ≥ 0x80 in a latin1-read name (without one, the name is ASCII, hence UTF-8 as it is). */
const HIGH_BYTE = /[\u0080-\u00ff]/;

/** A latin1-read name as text when its bytes are valid UTF-8; undefined when they are not. */
function utf8Of(name: string): string | undefined {
  if (!HIGH_BYTE.test(name)) return name;
  const bytes = Buffer.from(name, "latin1");
  return isUtf8(bytes) ? bytes.toString("utf8") : undefined;
}

const lossyUtf8 = (latin1: string) => Buffer.from(latin1, "latin1").toString("utf8");

function readSorted(dir: string): Dirent[] {
  let dirents: Dirent[];
  try {
    dirents = readdirSync(Buffer.from(dir, "latin1"), { withFileTypes: true, encoding: "latin1" });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // Gone meanwhile, or replaced by a file: nothing to walk there.
    if (code === "ENOENT" || code === "ENOTDIR") return [];
    throw err;
  }
  if (dirents.length < 2) return dirents;
  const keyed = dirents.map((d) => ({ key: walkKey(d.name, d.isDirectory()), d }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return keyed.map((k) => k.d);
}
