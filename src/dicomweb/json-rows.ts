/**
 * A QIDO-RS page (a JSON array of DICOM JSON objects) parsed a row at a time, keeping of each row
 * only the attributes the caller reads. `JSON.parse` of a whole page builds every attribute of
 * every row at once: at 5,000 rows a page (`--page-size 5000`) that was ~15 MiB more peak RSS in a
 * 10,000-instance pull than at 1,000 (131–132 against 146–150 MiB, measured), for three UIDs a row.
 *
 * `arrayElements` finds where each top-level element of an array starts and ends (strings and
 * nesting respected); every element is then checked by `JSON.parse` itself, and the text between
 * them (brackets, commas, whitespace) here. So nothing is accepted that `JSON.parse(text)` would
 * refuse, and text that is not an array comes back as undefined: the caller parses it whole, and
 * gets the same answer or error as before.
 */

/** JSON's insignificant whitespace: space, tab, line feed, carriage return. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/**
 * The [start, end) offsets of each top-level element of the JSON array `text`, or undefined when
 * `text` is not one array (whitespace around it allowed) with one element between each pair of
 * commas. The elements' own syntax is not checked here (see `parseRows`).
 */
export function arrayElements(text: string): Array<[number, number]> | undefined {
  const n = text.length;
  let i = 0;
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x5b /* [ */) return undefined;
  i++;
  const out: Array<[number, number]> = [];
  for (;;) {
    while (i < n && isSpace(text.charCodeAt(i))) i++;
    if (i >= n) return undefined;
    if (text.charCodeAt(i) === 0x5d /* ] */ && out.length === 0) {
      i++;
      break;
    }
    const start = i;
    let depth = 0;
    let inString = false;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (inString) {
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22 /* " */) inString = false;
      } else if (c === 0x22) inString = true;
      else if (c === 0x7b /* { */ || c === 0x5b) depth++;
      else if (c === 0x7d /* } */ || c === 0x5d) {
        if (depth === 0) break; // the array's own ] (or a stray }: refused below)
        depth--;
      } else if (c === 0x2c /* , */ && depth === 0) break;
    }
    if (i >= n) return undefined;
    const stop = text.charCodeAt(i);
    if (stop !== 0x2c && stop !== 0x5d) return undefined;
    let end = i;
    while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
    if (end === start) return undefined; // `[1,,2]`, `[1,]`
    out.push([start, end]);
    i++;
    if (stop === 0x5d) break;
  }
  while (i < n && isSpace(text.charCodeAt(i))) i++;
  return i === n ? out : undefined;
}

/**
 * The rows of a JSON array, each reduced to the attributes in `keep` (a row that is not an object
 * is kept as it is, for the caller to refuse); text that is not an array is parsed whole. Throws
 * `JSON.parse`'s SyntaxError for anything `JSON.parse(text)` would refuse.
 */
export function parseRows(text: string, keep: readonly string[]): unknown {
  const elements = arrayElements(text);
  if (elements === undefined) return JSON.parse(text) as unknown;
  const rows: unknown[] = new Array(elements.length);
  for (let k = 0; k < elements.length; k++) {
    const [start, end] = elements[k]!;
    rows[k] = pick(JSON.parse(text.slice(start, end)) as unknown, keep);
  }
  return rows;
}

function pick(row: unknown, keep: readonly string[]): unknown {
  if (typeof row !== "object" || row === null || Array.isArray(row)) return row;
  const out: Record<string, unknown> = {};
  for (const tag of keep) if (Object.hasOwn(row, tag)) out[tag] = (row as Record<string, unknown>)[tag];
  return out;
}
