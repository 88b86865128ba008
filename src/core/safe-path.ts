import path from "node:path";
import { UnsafeNameError } from "./errors.ts";

/**
 * Untrusted remote names (object names, DICOM UIDs) → relative local paths (DESIGN §6).
 * A name is accepted only if it maps to exactly one path strictly inside the destination and no
 * other accepted name can map to the same path: no `..`, `.`, empty segments (`a//b`, trailing
 * `/`), absolute names, NUL or other control characters, backslashes, over-long segments, and no
 * names inside the tool's own reserved namespace.
 */

/** Directory (at the destination root) where hcexport keeps its manifest, state and lock. */
export const RESERVED_DIR = ".hcexport";
/** Temporary files carry this marker; remote names containing it are refused. */
export const TEMP_MARKER = ".hcx-tmp-";

const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_BYTES = 4000;

export type NameCheck =
  { readonly ok: true; readonly segments: readonly string[] } | { readonly ok: false; readonly reason: string };

/** Pure check of one relative name (already stripped of any listing prefix). */
export function checkRelativeName(name: string): NameCheck {
  if (name.length === 0) return { ok: false, reason: "empty name" };
  if (name.includes("\0")) return { ok: false, reason: "contains NUL" };
  // eslint-disable-next-line no-control-regex
  if (/[\u0001-\u001f\u007f]/.test(name)) return { ok: false, reason: "contains a control character" };
  if (name.includes("\\")) return { ok: false, reason: "contains a backslash" };
  if (name.startsWith("/")) return { ok: false, reason: "absolute name" };
  if (name.endsWith("/")) return { ok: false, reason: "ends with '/' (a directory marker)" };
  if (Buffer.byteLength(name) > MAX_PATH_BYTES) return { ok: false, reason: `longer than ${MAX_PATH_BYTES} bytes` };
  const segments = name.split("/");
  for (const seg of segments) {
    if (seg === "") return { ok: false, reason: "empty path segment ('//')" };
    if (seg === "." || seg === "..") return { ok: false, reason: `'${seg}' path segment` };
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES)
      return { ok: false, reason: `a segment is longer than ${MAX_SEGMENT_BYTES} bytes` };
    if (seg.includes(TEMP_MARKER)) return { ok: false, reason: `contains the reserved temp marker '${TEMP_MARKER}'` };
  }
  if (segments[0] === RESERVED_DIR)
    return { ok: false, reason: `'${RESERVED_DIR}/' is reserved for hcexport's own state` };
  return { ok: true, segments };
}

/**
 * Maps a relative name to an absolute path inside `root`, or throws `UnsafeNameError`.
 * Symlinks are not resolved here: writers must still refuse to follow links (see atomic-file).
 */
export function resolveInside(root: string, name: string): string {
  const check = checkRelativeName(name);
  if (!check.ok) throw new UnsafeNameError(name, check.reason);
  const absRoot = path.resolve(root);
  const target = path.join(absRoot, ...check.segments);
  const rel = path.relative(absRoot, target);
  if (rel === "" || rel.startsWith("..") || path.isAbsolute(rel))
    throw new UnsafeNameError(name, "resolves outside the destination");
  return target;
}
