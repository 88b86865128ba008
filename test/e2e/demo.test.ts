import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

test("hcexport demo runs the whole workflow and verifies every file; a second run downloads nothing", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-demo-"));
  try {
    const cli = path.resolve("dist/cli/main.js");
    const first = await run(process.execPath, [cli, "demo", "--out", dir, "--train", "60", "--test", "15"], {
      timeout: 60_000,
    });
    assert.match(first.stdout, /verified\s+75 files byte-identical/);
    assert.match(first.stdout, /iam\s+granted roles\/storage\.objectAdmin/);
    assert.match(first.stdout, /train: 60 downloaded/);
    const second = await run(process.execPath, [cli, "demo", "--out", dir, "--train", "60", "--test", "15", "--json"], {
      timeout: 60_000,
    });
    const lines = second.stdout
      .trim()
      .split("\n")
      .map(
        (l) => JSON.parse(l) as { kind: string; mirrors?: Array<{ summary: { downloaded: number; skipped: number } }> },
      );
    const result = lines.find((l) => l.kind === "result")!;
    assert.deepEqual(
      result.mirrors!.map((m) => [m.summary.downloaded, m.summary.skipped]),
      [
        [0, 60],
        [0, 15],
      ],
    );
    assert.ok(
      lines.every((l) => typeof l.kind === "string"),
      "--json prints only NDJSON events",
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
