/**
 * A stand-in for the `string-width` package inside yargs' help layout (cliui, wrap-ansi), mapped in
 * by bin/hcexport.js's resolve hook. Loading `string-width` builds an Intl.Segmenter and its first
 * non-ASCII call compiles Unicode-set regexes: together most of `hcexport --help`'s start-up
 * (issue #14.5). Help text is printable ASCII plus a few symbols whose width is known, so those are
 * counted here; any other string goes to the real package, loaded on first need — the answers are
 * the same (test/unit/fast-string-width.test.ts compares them).
 */
import { createRequire } from "node:module";

/** Characters outside ASCII that our help text uses, all one column wide in `string-width`. */
const NARROW = "→←↔≥≤≠×÷…—–‘’“”·°±é";
const FAST = new RegExp(`^[\\u0020-\\u007E${NARROW}]*$`, "u");

type StringWidth = (input: string, options?: { ambiguousIsNarrow?: boolean; countAnsiEscapeCodes?: boolean }) => number;
let real: StringWidth | undefined;

/** Columns `input` takes on a terminal: `string-width`'s answer, cheaply for help text. */
export default function stringWidth(
  input: string,
  options?: { ambiguousIsNarrow?: boolean; countAnsiEscapeCodes?: boolean },
): number {
  if (typeof input !== "string" || input.length === 0) return 0;
  if (options?.ambiguousIsNarrow !== false && FAST.test(input)) return [...input].length;
  real ??= (createRequire(import.meta.url)("string-width") as { default: StringWidth }).default;
  return real(input, options);
}
