import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Clock } from "../../src/core/clock.ts";
import { HttpError, OperationFailedError, PermissionError } from "../../src/core/errors.ts";
import type { HealthcareApi, Operation } from "../../src/gcp/healthcare.ts";
import type { BucketAdmin } from "../../src/gcp/storage-admin.ts";
import type { RemoteSource } from "../../src/mirror/ports.ts";
import { planRun, runPipeline, type PipelineSpec } from "../../src/pipeline/pipeline.ts";
import { candidateExports } from "../../src/pipeline/start-export.ts";
import type { Policy } from "../../src/workflow/iam-policy.ts";
import {
  adoptEndpoint,
  emptyState,
  FileStateStore,
  MemoryStateStore,
  migrateV1,
  readState,
  type RunState,
  type StateV1,
} from "../../src/workflow/state.ts";

const result = (s: RunState, key: string) => s.steps[key]?.result as Record<string, unknown> | undefined;

const DATASET = "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax";
const TRAIN = `${DATASET}/dicomStores/dicom-images-train`;
const TEST = `${DATASET}/dicomStores/dicom-images-test`;
const AGENT = "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";

const fastClock: Clock = { now: () => Date.now(), sleep: async () => {} };
const poll = { clock: fastClock, backoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: "none" as const } };

function spec(dest: string, grantIam = true): PipelineSpec {
  return {
    bucket: { name: "hcx-bucket", project: "my-project" },
    serviceAgent: AGENT,
    grantIam,
    exports: [
      { store: TRAIN, prefix: "train", dest: path.join(dest, "train") },
      { store: TEST, prefix: "test", dest: path.join(dest, "test") },
    ],
    concurrency: 4,
  };
}

/** A fake Healthcare API: exports finish after `pollsToFinish` GETs; records every call. */
function fakeHealthcare(opts: { pollsToFinish?: number; fail?: boolean; postFailsAfterSending?: number } = {}) {
  const ops = new Map<string, { op: Operation; polls: number }>();
  const calls: string[] = [];
  let next = 1;
  let postFailures = opts.postFailsAfterSending ?? 0;
  const api: HealthcareApi = {
    async startExport(store, uri) {
      calls.push(`export ${store.split("/").pop()} ${uri}`);
      const name = `${DATASET}/operations/${next++}`;
      ops.set(name, {
        op: {
          name,
          metadata: {
            apiMethodName: "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData",
            createTime: new Date().toISOString(),
            counter: { pending: "3" },
          },
        },
        polls: 0,
      });
      if (postFailures > 0) {
        postFailures--;
        // The server started it, but the response was lost.
        throw new HttpError({ status: 503, method: "POST", url: `${store}:export`, message: "backend unavailable" });
      }
      return name;
    },
    async getOperation(name) {
      calls.push(`get ${name.split("/").pop()}`);
      const rec = ops.get(name);
      if (rec === undefined) throw new HttpError({ status: 404, method: "GET", url: name, message: "not found" });
      rec.polls++;
      if (rec.polls >= (opts.pollsToFinish ?? 2)) {
        rec.op = opts.fail
          ? {
              ...rec.op,
              done: true,
              metadata: { ...rec.op.metadata, logsUrl: "https://logs/x", counter: { success: "1", failure: "2" } },
              error: { code: 13, message: "2 of 3 instances failed to export" },
            }
          : {
              ...rec.op,
              done: true,
              metadata: { ...rec.op.metadata, counter: { success: "3" } },
              response: { "@type": "ExportDicomDataResponse" },
            };
      }
      return rec.op;
    },
    async listOperations(dataset) {
      calls.push(`list ${dataset.split("/").pop()}`);
      return [...ops.values()].map((r) => r.op);
    },
    async cancelOperation() {},
  };
  return { api, calls, ops };
}

function fakeBuckets(bindings: Policy["bindings"] = []) {
  const calls: string[] = [];
  let policy: Policy = { etag: "CAE=", version: 1, bindings };
  const b: BucketAdmin = {
    async ensureBucket(s) {
      calls.push(`ensure ${s.name}`);
      return { created: true };
    },
    async getPolicy() {
      calls.push("getPolicy");
      return structuredClone(policy);
    },
    async setPolicy(_bucket, p) {
      calls.push("setPolicy");
      policy = { ...p, etag: "CAI=" };
      return policy;
    },
  };
  return { b, calls };
}

const emptySource: RemoteSource = {
  async *listPages() {},
  async open() {
    throw new Error("nothing to open");
  },
};

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-pipe-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe("runPipeline: checkpointed, resumable steps", () => {
  test("a fresh run does every step once and checkpoints each export's operation", () =>
    withDir(async (dir) => {
      const hc = fakeHealthcare();
      const bk = fakeBuckets();
      const store = await FileStateStore.open(path.join(dir, ".hcexport"));
      const r = await runPipeline(
        spec(dir),
        { buckets: bk.b, healthcare: hc.api, source: emptySource },
        { state: store, poll },
      );
      assert.deepEqual(bk.calls, ["ensure hcx-bucket", "getPolicy", "setPolicy"]);
      assert.equal(hc.calls.filter((c) => c.startsWith("export")).length, 2);
      assert.equal(r.operations.length, 2);
      const onDisk = JSON.parse(await readFile(path.join(dir, ".hcexport", "state.json"), "utf8")) as RunState;
      assert.equal(onDisk.steps["wait:train"]!.status, "done");
      assert.equal(result(onDisk, "export:train")!["operation"], `${DATASET}/operations/1`);
      assert.deepEqual(result(onDisk, "wait:test"), { success: 3, failure: 0 });
      assert.equal(onDisk.steps["bucket"]?.status, "done");
      assert.equal(result(onDisk, "iam")!["granted"], true);
    }));

  test("the operation name is saved before polling: a crash while waiting resumes polling, no second export", () =>
    withDir(async (dir) => {
      const hc = fakeHealthcare({ pollsToFinish: 50 });
      const stateDir = path.join(dir, ".hcexport");
      const controller = new AbortController();
      const first = runPipeline(
        spec(dir),
        { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
        {
          state: await FileStateStore.open(stateDir),
          signal: controller.signal,
          poll: {
            ...poll,
            clock: { now: () => Date.now(), sleep: async () => void controller.abort(new Error("killed")) },
          },
        },
      );
      await assert.rejects(first);
      const saved = JSON.parse(await readFile(path.join(stateDir, "state.json"), "utf8")) as RunState;
      assert.equal(saved.steps["wait:train"]!.status, "started");
      assert.equal(result(saved, "export:train")!["operation"], `${DATASET}/operations/1`);

      const r = await runPipeline(
        spec(dir),
        { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
        { state: await FileStateStore.open(stateDir), poll },
      );
      assert.equal(
        hc.calls.filter((c) => c.startsWith("export")).length,
        2,
        "still only the two exports of the first run",
      );
      assert.deepEqual(r.operations.map((o) => o.name.split("/").pop()).sort(), ["1", "2"]);
      const after = JSON.parse(await readFile(path.join(stateDir, "state.json"), "utf8")) as RunState;
      assert.equal(after.steps["wait:test"]!.status, "done");
    }));

  test("a crash between sending the export and saving its name: the rerun adopts the listed operation", async () => {
    const hc = fakeHealthcare();
    await hc.api.startExport(TRAIN, "gs://hcx-bucket/train"); // reached the server; the name was never saved
    const state: RunState = {
      ...emptyState(),
      steps: {
        "export:train": {
          status: "started",
          input: `${TRAIN} → gs://hcx-bucket/train`,
          startedAt: new Date(Date.now() - 1000).toISOString(),
          attempts: 1,
        },
      },
    };
    const events: Array<{ kind: string }> = [];
    await runPipeline(
      spec("/tmp/unused"),
      { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
      { state: new MemoryStateStore(state), poll, onEvent: (e) => events.push(e) },
    );
    assert.equal(hc.ops.size, 2, "train adopted (not exported again), test exported once");
    assert.equal(result(state, "export:train")!["operation"], `${DATASET}/operations/1`);
    assert.ok(events.some((e) => e.kind === "export.adopted"));
  });

  test("a transient failure after the POST was sent is not retried blindly: the started export is found", async () => {
    const hc = fakeHealthcare({ postFailsAfterSending: 1 });
    const state = new MemoryStateStore();
    const r = await runPipeline(
      spec("/tmp/unused"),
      { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
      { state, poll, clock: fastClock },
    );
    assert.equal(hc.ops.size, 2, "one export per store despite the 503");
    assert.deepEqual(r.operations.map((o) => o.name.split("/").pop()).sort(), ["1", "2"]);
    assert.ok(hc.calls.includes("list siim-pneumothorax"));
  });

  test("a saved operation that no longer exists (expired, other endpoint) is replaced by a new export", async () => {
    const hc = fakeHealthcare();
    const state: RunState = migrateV1({
      version: 1,
      exports: {
        train: {
          store: TRAIN,
          uriPrefix: "gs://hcx-bucket/train",
          status: "running",
          operation: `${DATASET}/operations/999`,
          startedAt: "2020-01-01T00:00:00Z",
        },
      },
      mirrors: {},
    });
    await runPipeline(
      spec("/tmp/unused"),
      { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
      { state: new MemoryStateStore(state), poll },
    );
    assert.equal(hc.ops.size, 2);
    assert.equal(state.steps["wait:train"]!.status, "done");
    assert.notEqual(result(state, "export:train")!["operation"], `${DATASET}/operations/999`);
    assert.ok(hc.ops.has(result(state, "export:train")!["operation"] as string), "a new export, polled to its end");
  });

  test("finished exports are skipped on a rerun; --fresh-export and --force start new ones", async () => {
    const hc = fakeHealthcare();
    const state = new MemoryStateStore();
    const ports = { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource };
    await runPipeline(spec("/tmp/unused"), ports, { state, poll });
    const bk = fakeBuckets();
    const again = await runPipeline(spec("/tmp/unused"), { ...ports, buckets: bk.b }, { state, poll });
    assert.equal(again.operations.length, 0);
    assert.deepEqual(bk.calls, [], "bucket and IAM steps are not repeated");
    assert.equal(hc.ops.size, 2);
    await runPipeline(spec("/tmp/unused"), ports, { state, poll, freshExport: true });
    assert.equal(hc.ops.size, 4);
    await runPipeline(spec("/tmp/unused"), { ...ports, buckets: bk.b }, { state, poll, force: true });
    assert.equal(hc.ops.size, 6);
    assert.deepEqual(
      bk.calls.slice(0, 2),
      ["ensure hcx-bucket", "getPolicy"],
      "--force redoes the bucket and IAM steps",
    );
  });

  test("missing binding without grant: exit 3 naming member, role and fix; nothing exported", async () => {
    const hc = fakeHealthcare();
    const bk = fakeBuckets([{ role: "roles/storage.objectCreator", members: [`serviceAccount:${AGENT}`] }]);
    const err = await runPipeline(
      spec("/tmp/unused", false),
      { buckets: bk.b, healthcare: hc.api, source: emptySource },
      { poll },
    ).catch((e: unknown) => e);
    assert.ok(err instanceof PermissionError);
    assert.equal(err.exitCode, 3);
    assert.match(err.message, new RegExp(`${AGENT}.*roles/storage\\.objectAdmin`));
    assert.match(err.hint!, /hcexport iam grant gs:\/\/hcx-bucket --service-agent service-38125765871@/);
    assert.match(err.hint!, /--grant-iam/);
    assert.deepEqual(bk.calls, ["ensure hcx-bucket", "getPolicy"], "no policy write");
    assert.equal(hc.ops.size, 0);
  });

  test("a failed export: exit 4 with the operation's message and logs URL; recorded as failed; the rerun exports again", async () => {
    const hc = fakeHealthcare({ fail: true });
    const state = new MemoryStateStore();
    const err = await runPipeline(
      spec("/tmp/unused"),
      { buckets: fakeBuckets().b, healthcare: hc.api, source: emptySource },
      { state, poll },
    ).catch((e: unknown) => e);
    assert.ok(err instanceof OperationFailedError);
    assert.equal(err.exitCode, 4);
    assert.match(err.message, /2 of 3 instances failed/);
    assert.equal(err.logsUrl, "https://logs/x");
    assert.equal(state.state.steps["wait:train"]!.status, "failed");
    assert.equal(planRun(spec("/tmp/unused"), state.state).find((p) => p.key === "export:train")!.action, "run");
  });
});

describe("planRun and candidateExports are pure", () => {
  test("the plan follows the state: skip finished, resume running, run the rest", () => {
    const s = spec("/d");
    // A version-1 state file (hand-written checkpoints), migrated to the journal as `readState` does.
    const v1: StateV1 = {
      version: 1,
      bucket: { name: "hcx-bucket", done: true, at: "t0", created: true },
      mirrors: {},
      exports: {
        train: {
          store: TRAIN,
          uriPrefix: "gs://hcx-bucket/train",
          status: "running",
          operation: `${DATASET}/operations/7`,
          startedAt: "t1",
        },
        test: {
          store: TEST,
          uriPrefix: "gs://hcx-bucket/test",
          status: "done",
          operation: `${DATASET}/operations/8`,
          startedAt: "t1",
          finishedAt: "t2",
        },
      },
    };
    const state = migrateV1(v1);
    const before = JSON.stringify(state);
    const plan = planRun(s, state);
    assert.equal(JSON.stringify(state), before);
    assert.deepEqual(
      plan.map((p) => `${p.key}:${p.action}`),
      [
        "bucket:skip",
        "iam:run",
        "export:train:skip",
        "wait:train:resume",
        "mirror:train:run",
        "export:test:skip",
        "wait:test:skip",
        "mirror:test:run",
      ],
    );
    assert.deepEqual(planRun(s, state), plan, "same input, same plan");
    assert.deepEqual(
      planRun(s, state, { force: true }).map((p) => `${p.key}:${p.action}`),
      [
        "bucket:run",
        "iam:run",
        "export:train:skip", // its operation is still being waited for: never a second export
        "wait:train:resume",
        "mirror:train:run",
        "export:test:run",
        "wait:test:run",
        "mirror:test:run",
      ],
    );
    assert.deepEqual(
      planRun(s, state, { freshExport: true }).map((p) => `${p.key}:${p.action}`)[0],
      "bucket:recheck",
      "a run that will start an export verifies the bucket again",
    );
  });

  test("candidateExports: only exports created since the attempt (minus skew), never known ones", () => {
    const mk = (
      id: string,
      createTime: string,
      method = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData",
    ): Operation => ({ name: `${DATASET}/operations/${id}`, metadata: { apiMethodName: method, createTime } });
    const ops = [
      mk("old", "2026-01-01T00:00:00Z"),
      mk("mine", "2026-01-02T00:00:01Z"),
      mk("known", "2026-01-02T00:00:02Z"),
      mk("import", "2026-01-02T00:00:03Z", "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"),
    ];
    assert.deepEqual(
      candidateExports(ops, "2026-01-02T00:00:00Z", new Set([`${DATASET}/operations/known`])).map((o) =>
        o.name.split("/").pop(),
      ),
      ["mine"],
    );
  });
});

describe("state store", () => {
  test("checkpoints of another endpoint are dropped; the same endpoint keeps them", () => {
    const s: RunState = {
      ...emptyState(),
      endpoint: "http://127.0.0.1:1",
      steps: { bucket: { status: "done", startedAt: "t", attempts: 1, result: { name: "b", created: true } } },
    };
    assert.equal(adoptEndpoint(s, "http://127.0.0.1:1"), false);
    assert.equal(s.steps["bucket"]?.status, "done");
    assert.equal(adoptEndpoint(s, "https://healthcare.googleapis.com"), true);
    assert.deepEqual(s, { ...emptyState(), endpoint: "https://healthcare.googleapis.com" });
  });

  test("state.json is replaced atomically on every update and read back; a corrupt file is an error with a fix", () =>
    withDir(async (dir) => {
      const store = await FileStateStore.open(dir);
      await store.update((s) => void (s.steps["export:train"] = { status: "started", startedAt: "t", attempts: 1 }));
      await store.update((s) =>
        Object.assign(s.steps["export:train"]!, { status: "done", result: { operation: "op/1" } }),
      );
      assert.deepEqual((await readState(path.join(dir, "state.json"))).steps["export:train"]!.result, {
        operation: "op/1",
      });
      assert.deepEqual((await readState(path.join(dir, "missing.json"))).steps, {});
      // Concurrent writers (parallel lanes): every update is on disk when the last one resolves.
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          store.update((s) => void (s.steps[`k${i}`] = { status: "done", startedAt: "t", attempts: 1 })),
        ),
      );
      assert.equal(Object.keys((await readState(path.join(dir, "state.json"))).steps).length, 41);
      // A version-1 file is migrated on read.
      const { writeFile: write } = await import("node:fs/promises");
      await write(
        path.join(dir, "v1.json"),
        JSON.stringify({
          version: 1,
          exports: {
            train: { store: TRAIN, uriPrefix: "gs://b/train", status: "done", operation: "op/9", startedAt: "t" },
          },
          mirrors: {},
        }),
      );
      const migrated = await readState(path.join(dir, "v1.json"));
      assert.deepEqual(migrated.steps["export:train"]!.result, { operation: "op/9", uriPrefix: "gs://b/train" });
      assert.equal(migrated.steps["wait:train"]!.status, "done");
      const { writeFile } = await import("node:fs/promises");
      await writeFile(path.join(dir, "state.json"), "{ torn");
      await assert.rejects(readState(path.join(dir, "state.json")), /unreadable.*\n?/);
    }));
});
