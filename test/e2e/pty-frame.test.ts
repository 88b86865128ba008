import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { startPty, ptySkip } from "../support/pty.ts";
import { SPINNER_FRAME } from "../support/pty-fixtures.ts";

/**
 * Issue #10: what a person sees on a 120-column terminal. While `mirror` runs, one status row
 * (spinner, counts, MiB, rate) redrawn in place, never wrapped even when the destination path is
 * longer than the terminal; at the end, the summary table and no spinner.
 */
const skip = ptySkip("pty-frame");
const OBJECTS = 40;

describe("the progress display on a 120×30 terminal", { skip }, () => {
  let cloud: LocalCloud;
  let dir = "";
  before(async () => {
    cloud = await startLocalCloud({});
    cloud.store.createBucket({ name: "pty-frame", projectNumber: "1" });
    for (let i = 0; i < OBJECTS; i++)
      cloud.store.putObject("pty-frame", `p/${String(i).padStart(3, "0")}.bin`, Buffer.alloc(20_000, i), "x/y");
    dir = await mkdtemp(path.join(os.tmpdir(), "hcx-pty-frame-"));
  });
  after(async () => {
    await cloud?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("mirror: one unwrapped status row while running; the summary table as the last frame", async () => {
    // Longer than the terminal is wide: the listing status would wrap if it were not cut.
    const dest = path.join(dir, "a-destination-directory-whose-name-is-long".repeat(3), "m");
    await mkdir(dest, { recursive: true });
    cloud.faults = { ...noFaults, latencyMs: 250, pathFilter: "/o/" };
    const t = await startPty(["mirror", "gs://pty-frame/p", dest, "--concurrency", "4", "--emulator", cloud.baseUrl], {
      cwd: dir,
    });
    const frames: string[] = [];
    try {
      await t.waitFor(SPINNER_FRAME, 20_000);
      for (let i = 0; i < 15; i++) {
        frames.push(await t.screen());
        await new Promise((r) => setTimeout(r, 60));
      }
      const exit = await t.exited(30_000);
      assert.equal(exit.code, 0, exit.history);
      const running = frames.filter((f) => SPINNER_FRAME.test(f));
      assert.ok(running.length >= 3, `only ${running.length} frames caught the spinner`);
      for (const f of running) {
        const rows = f.split("\n");
        const status = rows.filter((r) => SPINNER_FRAME.test(r));
        assert.equal(status.length, 1, `one status row, not ${status.length}:\n${f}`);
        // The status row is the last one, whole (not wrapped onto a second row), within 120 columns.
        assert.equal(rows.at(-1), status[0], f);
        assert.ok([...status[0]!].length <= 117, `${[...status[0]!].length} columns: ${status[0]}`);
        assert.match(
          status[0]!,
          /^. mirror: (listing gs:\/\/pty-frame\/p\/ → .*…|\d+ downloaded, 0 up to date of \d+\+? listed · [\d.]+(\/[\d.]+)? MiB · [\d.]+ MiB\/s)/,
        );
        // No leftovers of earlier redraws.
        assert.equal(rows.filter((r) => r.includes("mirror:")).length, 1, f);
      }
      assert.ok(
        running.some((f) => / mirror: \d+ downloaded/.test(f)),
        running.join("\n---\n"),
      );
      // The last frame: the summary table, nothing else left over.
      assert.doesNotMatch(exit.screen, SPINNER_FRAME, exit.screen);
      assert.doesNotMatch(exit.screen, /mirror:/, exit.screen);
      const lines = exit.screen.split("\n");
      assert.match(lines.at(-2)!, /^listed +downloaded +up to date +deleted +failed +refused +MiB +seconds$/);
      assert.match(lines.at(-1)!, new RegExp(`^${OBJECTS} +${OBJECTS} +0 +0 +0 +0 +0\\.8 +\\d+\\.\\d\\d$`));
    } finally {
      cloud.faults = { ...noFaults };
      await t.close();
    }
  });
});
