import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SIIM, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { spawnCli, type Ran } from "../support/chaos.ts";

const MAIN = path.resolve("src/cli/main.ts");
const MEMBER = `serviceAccount:${SIIM.serviceAgent}`;

/** Spawns the real CLI; `onLine` sees stdout lines as they come (and may kill the child). */
function cli(
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; onLine?: (line: string, child: ChildProcess) => void },
): Promise<Ran> {
  return spawnCli(MAIN, args, opts);
}

/** config/demo.json with its destinations and state under `dir`. */
async function writeConfig(dir: string, patch: Record<string, unknown> = {}): Promise<string> {
  const demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown> & {
    exports: Array<{ dest: string }>;
    annotations: { dest: string };
  };
  const cfg = {
    ...demo,
    exports: demo.exports.map((e) => ({ ...e, dest: e.dest.replace("../demo-out", "./out") })),
    annotations: { ...demo.annotations, dest: "./out/annotations" },
    stateDir: "./out/.hcexport",
    ...patch,
  };
  const file = path.join(dir, "config.json");
  await writeFile(file, JSON.stringify(cfg, null, 2));
  return file;
}

/** Every instance of both stores is on disk, byte-identical. */
async function assertMirrored(cloud: LocalCloud, dir: string): Promise<number> {
  let n = 0;
  for (const [store, sub] of [
    [SIIM_TRAIN_STORE, "train"],
    [SIIM_TEST_STORE, "test"],
  ] as const) {
    for (const inst of cloud.healthcare.instances(store)) {
      const file = path.join(dir, "out", sub, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`);
      const bytes = await readFile(file);
      assert.ok(bytes.equals(inst.data()), `${file} differs from the store`);
      n++;
    }
  }
  return n;
}

const exportsOf = (cloud: LocalCloud) =>
  cloud.healthcare.operations().filter((o) => o.method.endsWith("ExportDicomData")).length;

describe("hcexport run / iam against the local cloud (spawned CLI; see run.test.ts for the rest)", () => {
  const dirs: string[] = [];
  const clouds: LocalCloud[] = [];
  const tmp = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), "hcx-e2e-"));
    dirs.push(d);
    return d;
  };
  const cloudWith = async (o: Parameters<typeof startLocalCloud>[0]) => {
    const c = await startLocalCloud(o);
    clouds.push(c);
    return c;
  };
  after(async () => {
    await Promise.all(clouds.map((c) => c.close()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  test("a run killed during the mirror resumes without re-downloading finished files", async () => {
    const cloud = await cloudWith({
      dataset: { train: 150, test: 5, instanceBytes: 2048 },
      exportInstancesPerSecond: 5000,
    });
    const dir = await tmp();
    const cfg = await writeConfig(dir, { mirror: { concurrency: 2, delete: false } });
    cloud.faults = { ...cloud.faults, latencyMs: 15, pathFilter: "/o/" };
    let landed = 0;
    const killed = await cli(["run", cfg, "--emulator", cloud.baseUrl, "--json"], {
      cwd: dir,
      onLine: (line, child) => {
        const e = JSON.parse(line) as { kind: string; downloaded?: number };
        if (e.kind === "mirror.progress" && (e.downloaded ?? 0) >= 20 && landed === 0) {
          landed = e.downloaded!;
          child.kill("SIGKILL");
        }
      },
    });
    assert.equal(killed.signal, "SIGKILL", `killed mid-mirror (stderr: ${killed.stderr})`);
    assert.ok(landed >= 20 && landed < 150);
    cloud.faults = { ...cloud.faults, latencyMs: 0 };
    const before = cloud.requests.mediaGets();
    const rerun = await cli(["run", cfg, "--emulator", cloud.baseUrl], { cwd: dir });
    assert.equal(rerun.code, 0, rerun.stderr);
    const again = cloud.requests.mediaGets() - before;
    // Files that landed before the last manifest flush are never fetched again (slack: in flight at the flush).
    assert.ok(again <= 155 - landed + 2, `rerun downloaded ${again}, expected at most ${155 - landed + 2}`);
    assert.equal(exportsOf(cloud), 2);
    assert.equal(await assertMirrored(cloud, dir), 155);
    // And once everything is there, a run downloads nothing at all (counted at the server).
    const settled = cloud.requests.mediaGets();
    const third = await cli(["run", cfg, "--emulator", cloud.baseUrl], { cwd: dir });
    assert.equal(third.code, 0, third.stderr);
    assert.equal(cloud.requests.mediaGets(), settled);
    assert.match(third.stdout, /nothing changed/);
  });

  test("iam grant keeps existing unrelated bindings (incl. conditional ones) byte for byte", async () => {
    const cloud = await cloudWith({});
    const dir = await tmp();
    const base = `${cloud.baseUrl}/storage/v1/b`;
    assert.equal(
      (
        await fetch(`${base}?project=my-project`, {
          method: "POST",
          body: JSON.stringify({
            name: "keep-bindings",
            iamConfiguration: { uniformBucketLevelAccess: { enabled: true } },
          }),
        })
      ).status,
      200,
    );
    const read = async () =>
      (await (await fetch(`${base}/keep-bindings/iam?optionsRequestedPolicyVersion=3`)).json()) as {
        etag: string;
        bindings: Array<Record<string, unknown>>;
      };
    const p0 = await read();
    const mine = [
      {
        role: "roles/storage.objectViewer",
        members: ["user:alice@example.com", "group:radiology@example.com"],
        condition: {
          title: "only train/",
          description: "read train only",
          expression: 'resource.name.startsWith("projects/_/buckets/keep-bindings/objects/train/")',
        },
      },
      {
        role: "roles/storage.objectAdmin",
        members: ["user:bob@example.com"],
        condition: { title: "tmp", expression: 'request.time < timestamp("2030-01-01T00:00:00Z")' },
      },
      { role: "roles/storage.legacyBucketReader", members: ["projectViewer:my-project"] },
    ];
    const put = await fetch(`${base}/keep-bindings/iam`, {
      method: "PUT",
      body: JSON.stringify({ version: 3, etag: p0.etag, bindings: [...p0.bindings, ...mine] }),
    });
    assert.equal(put.status, 200);
    const before = await read();

    const check = await cli(
      ["iam", "check", "gs://keep-bindings", "--service-agent", SIIM.serviceAgent, "--emulator", cloud.baseUrl],
      { cwd: dir },
    );
    assert.equal(check.code, 3, "a conditional objectAdmin binding of someone else does not count");
    const grant = await cli(
      ["iam", "grant", "gs://keep-bindings", "--source-project", SIIM.project, "--emulator", cloud.baseUrl],
      { cwd: dir },
    );
    assert.equal(grant.code, 0, grant.stderr);
    const afterGrant = await read();
    for (const b of before.bindings)
      assert.ok(
        afterGrant.bindings.some((a) => JSON.stringify(a) === JSON.stringify(b)),
        `binding survived byte for byte: ${JSON.stringify(b)}`,
      );
    const added = afterGrant.bindings.filter(
      (a) => !before.bindings.some((b) => JSON.stringify(a) === JSON.stringify(b)),
    );
    assert.deepEqual(added, [{ role: "roles/storage.objectAdmin", members: [MEMBER] }]);
    const again = await cli(
      ["iam", "check", "gs://keep-bindings", "--service-agent", SIIM.serviceAgent, "--emulator", cloud.baseUrl],
      { cwd: dir },
    );
    assert.equal(again.code, 0, again.stderr);
  });

  test("the service agent is derived from the source project's number; export + operations wait; an unknown project says to give serviceAgent", async () => {
    const cloud = await cloudWith({ dataset: { train: 3, test: 1 }, exportInstancesPerSecond: 1000 });
    const dir = await tmp();
    await fetch(`${cloud.baseUrl}/storage/v1/b?project=my-project`, {
      method: "POST",
      body: JSON.stringify({ name: "derive-agent" }),
    });
    const ok = await cli(
      ["iam", "grant", "gs://derive-agent", "--source-project", SIIM.project, "--emulator", cloud.baseUrl, "--json"],
      { cwd: dir },
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout.trim()) as { serviceAgent: string }).serviceAgent, SIIM.serviceAgent);
    // With the binding in place: `export` prints the operation name, `operations wait` polls it to the end.
    const started = await cli(["export", SIIM_TRAIN_STORE, "gs://derive-agent/train", "--emulator", cloud.baseUrl], {
      cwd: dir,
    });
    assert.equal(started.code, 0, started.stderr);
    const op = started.stdout.trim();
    assert.match(
      op,
      /^projects\/kaggle-siim-healthcare\/locations\/us-central1\/datasets\/siim-pneumothorax\/operations\/\d+$/,
    );
    const waited = await cli(["operations", "wait", op, "--emulator", cloud.baseUrl], { cwd: dir });
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.stdout, /done \(3 succeeded, 0 failed\)/);
    assert.equal(cloud.store.objectCount("derive-agent"), 3);
    cloud.projects.hide("someone-elses-project"); // a project whose number you may not look up (403)
    const bad = await cli(
      ["iam", "grant", "gs://derive-agent", "--source-project", "someone-elses-project", "--emulator", cloud.baseUrl],
      { cwd: dir },
    );
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /"serviceAgent": "service-PROJECT_NUMBER@gcp-sa-healthcare/);
  });
});
