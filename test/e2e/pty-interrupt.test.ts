import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { noFaults, type FaultConfig } from "../../src/emulator/types.ts";
import { startPty, ptySkip, type PtyExit } from "../support/pty.ts";
import {
  demoConfig,
  lockPresent,
  SPINNER_FRAME,
  STOP_BOUND_MS,
  tempFiles,
  withoutEchoRow,
} from "../support/pty-fixtures.ts";

/**
 * Issue #10, finding 1: Ctrl-C (SIGINT from the terminal) and SIGTERM (to the pid, as a
 * scheduler sends it) during each step of `run` stop it within 2 s with 130 / 143 and one
 * wording, leave no temp file and no lock, and the rerun resumes. Each chain runs `run` on one
 * state directory; each run is interrupted one step further than the last (the local cloud is
 * slowed at that step), so every rerun also proves the resume; the last one finishes with exit 0.
 */
const skip = ptySkip("pty-interrupt");
const TRAIN = 24;
const TEST = 2;

/**
 * Where each run is stopped: the fault that holds the step, the status line that shows it is
 * running, and the request that shows it is in flight (so the signal meets a pending call, not the
 * loading of a module).
 */
const STEPS: ReadonlyArray<{ step: string; faults: Partial<FaultConfig>; status: RegExp; request: string }> = [
  {
    step: "bucket",
    faults: { latencyMs: 5000, pathFilter: "/storage/v1/b" },
    status: /bucket: ensure gs:\/\//,
    request: "/storage/v1/b",
  },
  { step: "iam", faults: { latencyMs: 5000, pathFilter: "/iam" }, status: /iam: service-/, request: "/iam" },
  {
    step: "export",
    faults: { latencyMs: 5000, pathFilter: ":export" },
    status: /export \w+: projects\//,
    request: ":export",
  },
  {
    step: "wait",
    faults: {},
    status: /wait(?: \w+)?: (?:siim-pneumothorax\/op\/|poll the export)/,
    request: "/operations/",
  },
  {
    step: "mirror",
    faults: { latencyMs: 700, pathFilter: "/o/" },
    status: /mirror: [1-9]\d* downloaded/,
    // A download of train's: its lane's wait is over. The test lane (2 instances) can mirror while
    // train's export still runs, and a signal then stops the wait, not a mirror (seen in CI).
    request: "/o/train%2F",
  },
  {
    step: "annotations",
    faults: { latencyMs: 5000, pathFilter: "/fhir/" },
    status: /annotations: /,
    request: "/fhir/",
  },
];
describe("Ctrl-C and SIGTERM during each step of run", { skip, concurrency: 2 }, () => {
  const clouds: LocalCloud[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(clouds.map((c) => c.close()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  for (const how of ["C-c", "SIGTERM"] as const) {
    test(`${how === "C-c" ? "Ctrl-C" : "SIGTERM"} at each step: exit ${how === "C-c" ? 130 : 143} within 2 s, no temp file, no lock, the rerun resumes`, async (ctx) => {
      // A slow export (TRAIN instances at 8/s) so the wait step can be caught.
      const cloud = await startLocalCloud({
        dataset: { train: TRAIN, test: TEST, instanceBytes: 2048 },
        exportInstancesPerSecond: 8,
      });
      clouds.push(cloud);
      const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-pty-int-"));
      dirs.push(dir);
      const cfg = await demoConfig(dir, { mirror: { concurrency: 2, delete: false } });
      // --no-follow: the steps one after another, so each can be caught on its own (the follow mode's
      // mirror is interrupted in pty-interrupt-commands.test.ts).
      const args = ["run", cfg, "--emulator", cloud.baseUrl, "--no-follow"];
      const stateDir = path.join(dir, "out", ".hcexport");
      const code = how === "C-c" ? 130 : 143;
      const name = how === "C-c" ? "SIGINT \\(Ctrl-C\\)" : "SIGTERM";

      for (const { step, faults, status, request } of STEPS) {
        if (step === "annotations") {
          // The engine fetches the annotations from the start, so the first runs already did. Let a
          // clean run finish the mirrors (so they are not interrupted a second time here), then forget
          // the annotations step (as if its fetch had never finished) to interrupt a fetch of it.
          cloud.faults = { ...noFaults };
          const clean = await startPty(args, { cwd: dir });
          const done = await clean.exited(30_000).finally(() => clean.close());
          assert.equal(done.code, 0, done.history);
          const file = path.join(stateDir, "state.json");
          const st = JSON.parse(await readFile(file, "utf8")) as { steps: Record<string, unknown> };
          delete st.steps["annotations"];
          await writeFile(file, JSON.stringify(st));
        }
        cloud.faults = { ...noFaults, ...faults };
        const seen = cloud.requests.entries.length;
        const t = await startPty(args, { cwd: dir });
        let exit: PtyExit;
        let sent: number;
        try {
          await t.waitFor(new RegExp(`${SPINNER_FRAME.source} ${status.source}`), 30_000);
          const deadline = performance.now() + 30_000;
          while (!cloud.requests.entries.slice(seen).some((e) => e.path.includes(request))) {
            assert.ok(performance.now() < deadline, `no request to ${request} in 30 s:\n${await t.screen()}`);
            await new Promise((r) => setTimeout(r, 10));
          }
          sent = performance.now();
          if (how === "C-c") await t.keys("C-c");
          else t.signal("SIGTERM");
          exit = await t.exited(sent - t.startedAt + 10_000);
        } finally {
          await t.close();
        }
        const where = `${how} at ${step}:\n${exit.history}`;
        ctx.diagnostic(`${how} at ${step}: exit ${exit.code} ${Math.round(exit.at - sent)} ms after the signal`);
        assert.equal(exit.code, code, where);
        assert.ok(exit.at - sent < STOP_BOUND_MS, `${Math.round(exit.at - sent)} ms to stop; ${where}`);
        // One wording for every command; the step it stopped is marked on the last frame.
        assert.match(exit.screen.replace(/\n/g, ""), new RegExp(`error: interrupted by ${name}: stopped cleanly`));
        assert.match(exit.screen, /fix: run the same command again to resume where it stopped/);
        // The engine ends the interrupted step (any lane of it) with ✖ and the interruption.
        assert.match(exit.screen, new RegExp(`✖ ${step}(?: \\w+)?: `), where);
        assert.doesNotMatch(withoutEchoRow(exit.screen), SPINNER_FRAME, where);
        assert.deepEqual(await tempFiles(path.join(dir, "out")), [], where);
        assert.equal(await lockPresent(stateDir), false, `the lock is left after ${how} at ${step}`);
        // `status` and the report tell the interruption from a failure.
        const { lastRun } = JSON.parse(await readFile(path.join(stateDir, "state.json"), "utf8")) as {
          lastRun: { exitCode: number; error: string };
        };
        assert.equal(lastRun.exitCode, code, where);
        assert.match(lastRun.error, /^interrupted by /);
      }

      cloud.faults = { ...noFaults };
      const t = await startPty(args, { cwd: dir });
      const last = await t.exited(30_000).finally(() => t.close());
      assert.equal(last.code, 0, last.history);
      assert.match(last.screen, /✔ annotations: /);
      assert.doesNotMatch(last.screen, SPINNER_FRAME);

      // Resumed, not repeated: one export per store (the interrupted start was adopted), every
      // instance byte-identical on disk, and no object fetched twice beyond what was in flight.
      const exportsStarted = cloud.healthcare.operations().filter((o) => o.method.endsWith("ExportDicomData")).length;
      assert.equal(exportsStarted, 2);
      for (const [store, sub] of [
        [SIIM_TRAIN_STORE, "train"],
        [SIIM_TEST_STORE, "test"],
      ] as const)
        for (const inst of cloud.healthcare.instances(store)) {
          const file = path.join(dir, "out", sub, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`);
          assert.ok((await readFile(file)).equals(inst.data()), file);
        }
      // In flight when the mirror step was interrupted: both lanes' mirrors at concurrency 2.
      assert.ok(cloud.requests.mediaGets() <= TRAIN + TEST + 2 * 2, `${cloud.requests.mediaGets()} media GETs`);
      assert.deepEqual(await tempFiles(path.join(dir, "out")), []);
      assert.equal(await lockPresent(stateDir), false);
    });
  }
});
