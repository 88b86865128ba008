/**
 * A stand-in for the `wrap-ansi` package inside yargs' help layout (cliui), mapped in by
 * bin/hcexport.js's resolve hook next to fast-string-width.ts. wrap-ansi walks every character of
 * the help text again after wrapping, to carry ANSI colours across line breaks; help text has no
 * escape codes, so that pass returns its input unchanged and is skipped here. The wrapping itself
 * follows wrap-ansi 9 (MIT, Sindre Sorhus) step by step; any text with an escape code goes to the
 * real package. test/unit/cli-commands-index.test.ts compares the two.
 */
import { createRequire } from "node:module";
import stringWidth from "./fast-string-width.ts";

interface WrapOptions {
  readonly hard?: boolean;
  readonly trim?: boolean;
  readonly wordWrap?: boolean;
}
type WrapAnsi = (input: string, columns: number, options?: WrapOptions) => string;
let real: WrapAnsi | undefined;

/** `wrap-ansi`'s answer for `input` wrapped to `columns`. */
export default function wrapAnsi(input: string, columns: number, options: WrapOptions = {}): string {
  const text = String(input);
  if (text.includes("\u001B") || text.includes("\u009B")) {
    real ??= (createRequire(import.meta.url)("wrap-ansi") as { default: WrapAnsi }).default;
    return real(text, columns, options);
  }
  return text
    .normalize()
    .replaceAll("\r\n", "\n")
    .split("\n")
    .map((line) => wrapLine(line, columns, options))
    .join("\n");
}

function wrapWord(rows: string[], word: string, columns: number): void {
  const characters = [...word];
  let visible = stringWidth(rows.at(-1)!);
  for (const [index, character] of characters.entries()) {
    const characterLength = stringWidth(character);
    if (visible + characterLength <= columns) rows[rows.length - 1] += character;
    else {
      rows.push(character);
      visible = 0;
    }
    visible += characterLength;
    if (visible === columns && index < characters.length - 1) {
      rows.push("");
      visible = 0;
    }
  }
  if (!visible && rows.at(-1)!.length > 0 && rows.length > 1) rows[rows.length - 2] += rows.pop()!;
}

function trimSpacesRight(row: string): string {
  const words = row.split(" ");
  let last = words.length;
  while (last > 0 && stringWidth(words[last - 1]!) === 0) last--;
  return last === words.length ? row : words.slice(0, last).join(" ") + words.slice(last).join("");
}

function wrapLine(line: string, columns: number, options: WrapOptions): string {
  if (options.trim !== false && line.trim() === "") return "";
  const words = line.split(" ");
  const lengths = words.map((w) => stringWidth(w));
  let rows = [""];
  for (const [index, word] of words.entries()) {
    if (options.trim !== false) rows[rows.length - 1] = rows.at(-1)!.trimStart();
    let rowLength = stringWidth(rows.at(-1)!);
    if (index !== 0) {
      if (rowLength >= columns && (options.wordWrap === false || options.trim === false)) {
        rows.push("");
        rowLength = 0;
      }
      if (rowLength > 0 || options.trim === false) {
        rows[rows.length - 1] += " ";
        rowLength++;
      }
    }
    const length = lengths[index]!;
    if (options.hard && length > columns) {
      const remaining = columns - rowLength;
      const breaksStartingThisLine = 1 + Math.floor((length - remaining - 1) / columns);
      const breaksStartingNextLine = Math.floor((length - 1) / columns);
      if (breaksStartingNextLine < breaksStartingThisLine) rows.push("");
      wrapWord(rows, word, columns);
      continue;
    }
    if (rowLength + length > columns && rowLength > 0 && length > 0) {
      if (options.wordWrap === false && rowLength < columns) {
        wrapWord(rows, word, columns);
        continue;
      }
      rows.push("");
    }
    if (rowLength + length > columns && options.wordWrap === false) {
      wrapWord(rows, word, columns);
      continue;
    }
    rows[rows.length - 1] += word;
  }
  if (options.trim !== false) rows = rows.map(trimSpacesRight);
  return rows.join("\n");
}
