import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { Output } from "../../src/cli/output.ts";
import { formatPipelineEvent } from "../../src/cli/format.ts";

function sink(extra: { isTTY?: boolean; columns?: number }) {
  let text = "";
  const w = Object.assign(new Writable({ write: (c, _e, cb) => ((text += String(c)), cb()) }), extra);
  return { w, text: () => text };
}

test("a terminal of unknown width gets plain lines, not spinners (ora cleared lines forever on a 0-column pty)", () => {
  const err = sink({ isTTY: true, columns: 0 });
  const out = new Output({ json: false, quiet: false, verbose: false, stdout: sink({}).w, stderr: err.w });
  assert.equal(out.isTTY, false);
  out.use(formatPipelineEvent);
  out.emit({ kind: "step.start", step: "bucket", detail: "gs://b" } as never);
  out.emit({ kind: "step.done", step: "bucket", detail: "created gs://b" } as never);
  assert.match(err.text(), /✔ bucket: created gs:\/\/b\n/);
  assert.equal(err.text().length < 200, true, err.text());
});

test("--json writes only NDJSON events and results to stdout", () => {
  const std = sink({});
  const err = sink({ isTTY: true, columns: 80 });
  const out = new Output({ json: true, quiet: false, verbose: false, stdout: std.w, stderr: err.w });
  out.emit({ kind: "step.done", step: "iam", detail: "x" } as never);
  out.result("table", { ok: true });
  const lines = std
    .text()
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { kind: string });
  assert.deepEqual(
    lines.map((l) => l.kind),
    ["step.done", "result"],
  );
  assert.equal(err.text(), "");
});
