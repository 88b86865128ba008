import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { PassThrough } from "node:stream";
import realStringWidth from "string-width";
import { commands } from "../../src/cli/commands/index.ts";
import type { CliIo } from "../../src/cli/context.ts";
import fastStringWidth from "../../src/cli/fast-string-width.ts";
import fastWrapAnsi from "../../src/cli/fast-wrap-ansi.ts";
import realWrapAnsi from "wrap-ansi";

const io: CliIo = {
  stdout: new PassThrough(),
  stderr: new PassThrough(),
  env: {},
  cwd: process.cwd(),
  signal: new AbortController().signal,
};

test("every lazy index entry names its module's own command string and description", async () => {
  assert.ok(commands.length >= 13);
  const seen = new Set<string>();
  for (const entry of commands) {
    const module = (await entry.load())(io);
    assert.equal(entry.command, module.command, `index entry for ${String(module.command)}`);
    assert.equal(entry.describe, module.describe, `describe of ${entry.command}`);
    const name = entry.command.split(" ")[0]!;
    assert.ok(!seen.has(name), `${name} registered twice`);
    seen.add(name);
  }
});

test("the command index and run-cli import no command module statically (start-up, issue #14.5)", () => {
  for (const file of ["src/cli/commands/index.ts", "src/cli/run-cli.ts", "src/cli/main.ts"]) {
    const statics = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => /^import\s(?!type\b)/.test(l))
      .map((l) => /from\s+"([^"]+)"/.exec(l)?.[1] ?? l);
    const allowed = new Set(["node:fs", "../core/errors.ts", "./commands/index.ts", "./run-cli.ts"]);
    for (const s of statics) assert.ok(allowed.has(s), `${file} statically imports ${s}: load it in a handler instead`);
  }
});

test("fast-string-width answers exactly what string-width answers", () => {
  const samples = [
    "",
    "plain ascii help text [string] [default: 32]",
    "ensure bucket → check/grant IAM → export → wait",
    "≥ 1.5× rclone … “quoted” — ‘done’ – ±3° é",
    "\u001b[31mred\u001b[39m text",
    "日本語のテキスト",
    "emoji 👍🏽 and 👨‍👩‍👧",
    "combining e\u0301 and zero\u200bwidth",
    "tab\tand\nnewline",
    "soft\u00adhyphen",
  ];
  for (const s of samples) {
    assert.equal(fastStringWidth(s), realStringWidth(s), JSON.stringify(s));
    assert.equal(
      fastStringWidth(s, { ambiguousIsNarrow: false }),
      realStringWidth(s, { ambiguousIsNarrow: false }),
      JSON.stringify(s),
    );
  }
});

test("fast-wrap-ansi wraps exactly as wrap-ansi does", () => {
  const texts = [
    ...commands.map((c) => c.describe),
    "copy gs://BUCKET/PREFIX to DIR: parallel, verified (CRC32C), atomic, incremental",
    "  leading and trailing spaces   and  doubled  spaces  ",
    "averyveryverylongwordthatmustbehardbrokenacrossseverallines and then short words",
    "line one\nline two that is a little longer\r\nline three",
    "ensure bucket → check/grant IAM → export → wait → mirror → annotations (resumable)",
    "\u001b[31mred words that wrap across lines\u001b[39m and plain ones",
    "",
    "   ",
    "日本語のテキストを折り返す テスト",
  ];
  for (const text of texts)
    for (const columns of [1, 5, 12, 20, 37, 60, 110])
      for (const options of [{ hard: true }, {}, { trim: false }, { wordWrap: false }, { hard: true, trim: false }])
        assert.equal(
          fastWrapAnsi(text, columns, options),
          realWrapAnsi(text, columns, options),
          `${JSON.stringify(text)} at ${columns} ${JSON.stringify(options)}`,
        );
});
