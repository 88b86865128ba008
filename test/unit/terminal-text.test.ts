import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { stripVTControlCharacters } from "node:util";
import { fitColumns, Output } from "../../src/cli/output.ts";
import { escapeControls, escapeJsonControls } from "../../src/core/terminal-text.ts";

const HOSTILE = "bad\u001b[2J\u001b]0;pwned\u0007 \u009b31m red\r\u202eevil\u007f";

function sink(extra: { isTTY?: boolean; columns?: number } = {}) {
  let text = "";
  const w = Object.assign(new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }), extra, {
    // What ora calls on a TTY stream.
    cursorTo: () => true,
    moveCursor: () => true,
    clearLine: () => true,
  });
  return { w, text: () => text };
}

/** Any byte a terminal acts on: C0 but newline, DEL, C1 (as UTF-8 code points), bidi overrides. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

test("escapeControls writes every terminal control as a visible \\uXXXX and keeps the text around it", () => {
  assert.equal(escapeControls(HOSTILE), "bad\\u001b[2J\\u001b]0;pwned\\u0007 \\u009b31m red\\u000d\\u202eevil\\u007f");
  assert.equal(escapeControls("two\nlines\tand tab"), "two\nlines\tand tab");
  assert.equal(escapeControls("two\nlines", { oneLine: true }), "two\\u000alines");
  assert.equal(escapeControls("漢字 café ✔"), "漢字 café ✔");
});

test("escapeJsonControls leaves valid JSON that decodes to the same string", () => {
  const json = escapeJsonControls(JSON.stringify({ message: HOSTILE }));
  assert.doesNotMatch(json, RAW_CONTROL);
  assert.equal((JSON.parse(json) as { message: string }).message, HOSTILE);
});

test("the output edge escapes remote text in lines, statuses, results, errors and NDJSON", () => {
  const err = sink();
  const std = sink();
  const out = new Output({ json: false, quiet: false, verbose: false, stdout: std.w, stderr: err.w });
  out.use((e) => (e.kind === "x" ? { line: `line ${HOSTILE}`, status: `status ${HOSTILE}` } : undefined));
  out.emit({ kind: "x" });
  out.line(HOSTILE);
  out.result(`result ${HOSTILE}`, {});
  out.error(`error ${HOSTILE}`, { hint: `hint ${HOSTILE}` });
  assert.doesNotMatch(err.text(), RAW_CONTROL);
  assert.doesNotMatch(std.text(), RAW_CONTROL);
  assert.match(err.text(), /error: error bad\\u001b\[2J/);
  assert.match(err.text(), / {2}fix: hint bad/);

  const nd = sink();
  const json = new Output({ json: true, quiet: false, verbose: false, stdout: nd.w, stderr: sink().w });
  json.emit({ kind: "mirror.failed", name: HOSTILE } as never);
  json.error(HOSTILE);
  assert.doesNotMatch(nd.text(), RAW_CONTROL);
  const lines = nd
    .text()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { name?: string; message?: string });
  assert.equal(lines[0]!.name, HOSTILE);
  assert.equal(lines[1]!.message, HOSTILE);
});

test("stopStatus ends a TTY spinner (its timer kept a finished command alive) and marks the step failed", async () => {
  const err = sink({ isTTY: true, columns: 120 });
  const out = new Output({ json: false, quiet: false, verbose: false, stdout: sink().w, stderr: err.w });
  out.use((e) => (e.kind === "s" ? { status: "iam: checking" } : undefined));
  const before = process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  out.emit({ kind: "s" });
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length, before + 1);
  out.stopStatus(true);
  assert.equal(process.getActiveResourcesInfo().filter((r) => r === "Timeout").length, before);
  assert.match(stripVTControlCharacters(err.text()), /✖ iam: checking\n$/);
});

test("a status is cut to one terminal row (wide characters count two), so redraws never wrap", () => {
  assert.equal(fitColumns("short", 10), "short");
  assert.equal(fitColumns("abcdefghijkl", 10), "abcdefghi…");
  assert.equal(fitColumns("漢字漢字漢字", 7), "漢字漢…");
  assert.equal(fitColumns("e\u0301e\u0301e\u0301e\u0301", 3), "e\u0301e\u0301…");
});
