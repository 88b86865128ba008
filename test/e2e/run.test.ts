import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_DATASET_PATH, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { acquireLock } from "../../src/workflow/lock.ts";

const exec = promisify(execFile);
const cli = path.resolve("dist/cli/main.js");
let tmp: string;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-run-"));
});
after(() => rm(tmp, { recursive: true, force: true }));

function config(name: string, bucket: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    project: "my-e2e-project",
    bucket: { name: bucket, location: "us-central1" },
    grantIam: true,
    exports: [
      { store: SIIM_TRAIN_STORE, prefix: "train", dest: `${name}/train` },
      { store: SIIM_TEST_STORE, prefix: "test", dest: `${name}/test` },
    ],
    stateDir: `${name}/.hcexport`,
    ...overrides,
  };
}

async function writeConfig(name: string, cfg: Record<string, unknown>): Promise<string> {
  const file = path.join(tmp, `${name}.json`);
  await writeFile(file, JSON.stringify(cfg));
  return file;
}

async function hcexport(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [cli, ...args], { env: { ...process.env, ...env }, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function assertOnDisk(cloud: LocalCloud, dir: string): Promise<void> {
  for (const [store, sub] of [
    [SIIM_TRAIN_STORE, "train"],
    [SIIM_TEST_STORE, "test"],
  ] as const) {
    for (const inst of cloud.healthcare.instances(store)) {
      assert.deepEqual(
        await readFile(path.join(dir, sub, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`)),
        inst.data(),
      );
    }
  }
}

describe("hcexport run", () => {
  let cloud: LocalCloud;
  before(async () => {
    cloud = await startLocalCloud({
      dataset: { train: 40, test: 10, instanceBytes: 4096 },
      exportInstancesPerSecond: 1000,
    });
  });
  after(() => cloud.close());

  test("runs end to end, byte-identical; a second run exports nothing, downloads nothing, and says so", async () => {
    const file = await writeConfig("a", config("a", "e2e-bucket-a"));
    const first = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(first.code, 0, first.stderr);
    await assertOnDisk(cloud, path.join(tmp, "a"));
    const ops = cloud.healthcare.operations().length;
    const second = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /nothing changed: no export started, nothing downloaded/);
    assert.equal(cloud.healthcare.operations().length, ops);
    const status = await hcexport(["status", file]);
    assert.match(status.stdout, /export train\s+done/);
  });

  test("missing binding without grant: exit 3, nothing exported, the message names member, role and fix", async () => {
    const before = cloud.healthcare.operations().length;
    const file = await writeConfig("b", config("b", "e2e-bucket-b", { grantIam: false }));
    const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`${SIIM.serviceAgent.replace(/\./g, "\\.")} lacks roles/storage\\.objectAdmin`));
    assert.match(
      r.stderr,
      /hcexport iam grant gs:\/\/e2e-bucket-b --service-agent service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com' or pass --grant-iam/,
    );
    assert.equal(cloud.healthcare.operations().length, before);
    // The flag overrides the file.
    const granted = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--grant-iam"]);
    assert.equal(granted.code, 0, granted.stderr);
  });

  test("preconditions are verified again before a new export: revoked binding → exit 3 whose fix works; deleted bucket → recreated", async () => {
    const file = await writeConfig("r", config("r", "e2e-bucket-r", { grantIam: false }));
    const first = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--grant-iam"]);
    assert.equal(first.code, 0, first.stderr);
    const exports = () => cloud.healthcare.operations().length;
    // Someone revokes the service agent's binding between runs.
    cloud.store.setPolicy("e2e-bucket-r", { version: 1, bindings: [] });
    const before = exports();
    const r = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--fresh-export"]);
    assert.equal(r.code, 3, `not "checked in an earlier run" then a doomed export:\n${r.stderr}`);
    assert.doesNotMatch(r.stderr, /earlier run/);
    assert.match(r.stderr, /lacks roles\/storage\.objectAdmin/);
    assert.match(r.stderr, /or pass --grant-iam/);
    assert.equal(exports(), before, "no export started without the binding");
    // The fix the message gives works.
    const fixed = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--fresh-export", "--grant-iam"]);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal(exports(), before + 2, "one new export per store");
    assert.ok(
      cloud.store
        .getPolicy("e2e-bucket-r")!
        .bindings.some(
          (b) => b.role === "roles/storage.objectAdmin" && b.members.includes(`serviceAccount:${SIIM.serviceAgent}`),
        ),
      "the binding is back",
    );
    // A run that starts no export does not look (cheap reruns stay cheap) …
    cloud.store.setPolicy("e2e-bucket-r", { version: 1, bindings: [] });
    const idle = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(idle.code, 0, idle.stderr);
    // … and a deleted bucket is recreated before the next export.
    for (const o of cloud.store.listObjects("e2e-bucket-r", { limit: 10_000 }))
      cloud.store.deleteObject("e2e-bucket-r", o.name);
    assert.equal(cloud.store.deleteBucket("e2e-bucket-r"), true);
    const recreated = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--fresh-export", "--grant-iam"]);
    assert.equal(recreated.code, 0, recreated.stderr);
    assert.ok(cloud.store.getBucket("e2e-bucket-r") !== undefined, "bucket recreated");
    assert.equal(cloud.store.objectCount("e2e-bucket-r"), 50, "and exported into again");
    await assertOnDisk(cloud, path.join(tmp, "r"));
  });

  test("a failing export exits 4 with the operation's message and logs URL", async () => {
    const file = await writeConfig("c", config("c", "e2e-bucket-c"));
    await request(`${cloud.baseUrl}/_emulator/faults`, {
      method: "POST",
      body: JSON.stringify({ exportFailureRate: 0.5, seed: 3 }),
    });
    try {
      const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /failed \(code 13\).*instances failed to export/);
      assert.match(r.stderr, /logs: https:\/\/console\.cloud\.google\.com\//);
    } finally {
      await request(`${cloud.baseUrl}/_emulator/reset-faults`, { method: "POST" });
    }
  });

  test("a config with three mistakes exits 2 listing all three with their paths", async () => {
    const file = await writeConfig("d", {
      ...config("d", "Bad_Bucket"),
      exports: [{ store: "projects/p/nope", prefix: "../x", dest: "d" }],
      colour: "blue",
    });
    const r = await hcexport(["run", file]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /has 4 problems/);
    assert.match(r.stderr, /bucket\.name: bucket name "Bad_Bucket"/);
    assert.match(r.stderr, /exports\[0\]\.store: "projects\/p\/nope" is not a store name/);
    assert.match(r.stderr, /exports\[0\]\.prefix: "\.\.\/x" is not a usable object prefix/);
    assert.match(r.stderr, /\(config\): unknown key "colour"/);
  });

  test("a second concurrent run exits 6 naming the holder", async () => {
    const file = await writeConfig("e", config("e", "e2e-bucket-e"));
    const lock = await acquireLock(path.join(tmp, "e", ".hcexport", "lock"), { command: "run e.json" });
    try {
      const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
      assert.equal(r.code, 6);
      assert.match(r.stderr, new RegExp(`pid ${process.pid}`));
    } finally {
      await lock.release();
    }
  });
});

describe("crash while waiting on the export", () => {
  let emulator: ChildProcess;
  let url: string;
  before(async () => {
    emulator = spawn(
      process.execPath,
      [
        cli,
        "emulator",
        "--port",
        "0",
        "--dataset",
        "siim",
        "--train",
        "60",
        "--test",
        "10",
        "--export-rate",
        "25",
        "--quiet",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    url = await new Promise<string>((resolve) => {
      emulator.stdout!.on("data", (d) => {
        const m = /listening on (\S+)/.exec(String(d));
        if (m) resolve(m[1]!);
      });
    });
  });
  after(() => {
    emulator.kill("SIGTERM");
  });

  test("SIGKILL during the wait, then a rerun, completes without a second export", async () => {
    const file = await writeConfig("k", config("k", "e2e-bucket-k"));
    const child = spawn(process.execPath, [cli, "run", file, "--emulator", url], { stdio: "ignore" });
    const stateFile = path.join(tmp, "k", ".hcexport", "state.json");
    for (let i = 0; i < 200; i++) {
      const s = await readFile(stateFile, "utf8").catch(() => "");
      if ((s.match(/"operation"/g) ?? []).length === 2 && s.includes('"wait:train"') && s.includes('"wait:test"'))
        break;
      await new Promise((r) => setTimeout(r, 25));
    }
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    const state = JSON.parse(await readFile(stateFile, "utf8"));
    assert.equal(state.steps["wait:train"].status, "started", "killed while waiting");
    const r = await hcexport(["run", file, "--emulator", url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /resuming .*operations\/\d+.*no new export/);
    const list = (await (await request(`${url}/v1/${SIIM_DATASET_PATH}/operations`)).body.json()) as {
      operations: unknown[];
    };
    assert.equal(list.operations.length, 2, "exactly one export per store");
    const files = await exec("find", [path.join(tmp, "k", "train"), "-name", "*.dcm"]);
    assert.equal(files.stdout.trim().split("\n").length, 60);
  });
});
