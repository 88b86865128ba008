import { keywordOf } from "../dicomweb/keywords.ts";

/**
 * `dicomweb search` output: rows in the DICOM JSON model (PS3.18 F.2) rendered as a table that
 * fits the terminal, RFC 4180 CSV, JSON (the array as served) or NDJSON (one row per line).
 */
type Row = Record<string, { vr?: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string } | undefined>;

/** The attribute columns of the rows, tags in order of first appearance. */
export function columnsOf(rows: readonly unknown[]): string[] {
  const seen = new Set<string>();
  for (const row of rows)
    if (row !== null && typeof row === "object") for (const tag of Object.keys(row)) seen.add(tag);
  return [...seen];
}

/** One attribute as text: values joined with `\` (DICOM's multi-value separator), names by their Alphabetic form. */
export function valueText(attr: Row[string]): string {
  if (attr === undefined || attr === null || typeof attr !== "object") return "";
  if (attr.BulkDataURI !== undefined || attr.InlineBinary !== undefined) return "<binary>";
  const values = Array.isArray(attr.Value) ? attr.Value : [];
  if (attr.vr === "SQ") return values.length === 0 ? "" : `<${values.length} item${values.length === 1 ? "" : "s"}>`;
  return values
    .map((v) => {
      if (v === null || v === undefined) return "";
      if (typeof v === "object") {
        const pn = v as { Alphabetic?: unknown; Ideographic?: unknown; Phonetic?: unknown };
        return [pn.Alphabetic, pn.Ideographic, pn.Phonetic]
          .map((c) => (typeof c === "string" ? c : ""))
          .join("=")
          .replace(/=+$/, "");
      }
      return String(v);
    })
    .join("\\");
}

/** Control characters (C0, DEL, C1) and line/paragraph separators shown as escapes, so a value cannot move the cursor. */
export function escapeControls(s: string): string {
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const named: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    return named[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** Cuts a cell to `width` code points, ending in `…` when cut. */
function fit(s: string, width: number): string {
  const cps = [...s];
  if (cps.length <= width) return s + " ".repeat(width - cps.length);
  return width <= 0 ? "" : `${cps.slice(0, width - 1).join("")}…`;
}

const GAP = 2;
const MIN_COLUMN = 10;

/**
 * A table whose lines are at most `width` code points: the widest columns give way first (down
 * to a few characters, cells cut with `…`); columns that still do not fit are left out, and the
 * last line says which.
 */
export function searchTable(rows: readonly unknown[], width = Number.POSITIVE_INFINITY): string {
  const tags = columnsOf(rows);
  if (tags.length === 0) return rows.length === 0 ? "(no results)\n" : "";
  const header = tags.map((t) => escapeControls(keywordOf(t)));
  const cells = rows.map((r) => tags.map((t) => escapeControls(valueText((r as Row)[t]))));
  const widths = header.map((h, i) => Math.max([...h].length, ...cells.map((c) => [...c[i]!].length)));
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP * (widths.length - 1);
  while (total() > width) {
    let widest = 0;
    for (let i = 1; i < widths.length; i++) if (widths[i]! > widths[widest]!) widest = i;
    if (widths[widest]! <= MIN_COLUMN) break;
    widths[widest]!--;
  }
  let shown = widths.length;
  while (shown > 1 && widths.slice(0, shown).reduce((a, b) => a + b, 0) + GAP * (shown - 1) > width) shown--;
  const line = (r: string[]) =>
    r
      .slice(0, shown)
      .map((c, i) => fit(c, Math.min(widths[i]!, width)))
      .join(" ".repeat(GAP))
      .trimEnd();
  const out = [line(header), ...cells.map(line)];
  if (shown < tags.length)
    out.push(fit(`(${tags.length - shown} more columns: use --format csv or json)`, width).trimEnd());
  return `${out.join("\n")}\n`;
}

/** One CSV field (RFC 4180: quoted when it holds a comma, quote, CR or LF; quotes doubled). */
function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** RFC 4180 CSV: a header of keywords, one record per row, CRLF line ends. */
export function searchCsv(rows: readonly unknown[]): string {
  const tags = columnsOf(rows);
  if (tags.length === 0) return "";
  const lines = [tags.map((t) => csvField(keywordOf(t)))];
  for (const r of rows) lines.push(tags.map((t) => csvField(valueText((r as Row)[t]))));
  return lines.map((l) => `${l.join(",")}\r\n`).join("");
}
