import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { SIIM_FHIR_STORE, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { requireBuiltCli, spawnCli } from "../support/chaos.ts";

// `hcexport run` with the optional lanes of issue #12 (parts 5 and 6), as a user runs it (the built
// CLI, spawned) against the local cloud: a BigQuery entry on the train store and a FHIR store
// export. The table's rows are read back over BigQuery's wire API (tabledata.list) and the NDJSON
// files on disk are parsed and compared with the resources the local cloud was seeded with.

const TRAIN = 30;
const TEST = 6;
const P = "my-demo-project";
const TABLE = `bq://${P}.siim_meta.train`;
let cloud: LocalCloud;
let dir: string;
let cli: string;
let cfg: string;

before(async () => {
  cli = requireBuiltCli();
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-lanes-"));
  cloud = await startLocalCloud({
    dataset: { train: TRAIN, test: TEST, seed: 9, instanceBytes: 4096 },
    exportInstancesPerSecond: 400,
  });
  // The documented example (config/demo-lanes.json) with its destinations under `dir`.
  const demo = JSON.parse(await readFile(path.resolve("config/demo-lanes.json"), "utf8")) as {
    exports: Array<{ store: string; dest: string; bigquery?: { table: string; writeDisposition: string } }>;
    annotations: { dest: string };
    fhirExports: Array<{ prefix: string; dest: string; store?: string }>;
  };
  assert.deepEqual(
    demo.exports.map((e) => [e.store, e.bigquery]),
    [
      [SIIM_TRAIN_STORE, { table: TABLE, writeDisposition: "WRITE_TRUNCATE" }],
      [SIIM_TEST_STORE, undefined],
    ],
  );
  assert.deepEqual(demo.fhirExports, [{ prefix: "fhir", dest: "../demo-out/fhir" }], "the annotations' store");
  const local = (d: string) => d.replace("../demo-out", "./out");
  cfg = path.join(dir, "config.json");
  await writeFile(
    cfg,
    JSON.stringify({
      ...demo,
      exports: demo.exports.map((e) => ({
        ...e,
        dest: local(e.dest),
      })),
      annotations: { ...demo.annotations, dest: local(demo.annotations.dest) },
      fhirExports: demo.fhirExports.map((f) => ({ ...f, dest: local(f.dest) })),
      stateDir: "./out/.hcexport",
    }),
  );
});
after(async () => {
  await cloud?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const hcexport = (...args: string[]) => spawnCli(cli, [...args, "--emulator", cloud.baseUrl], { cwd: dir });

async function get(p: string): Promise<Record<string, unknown>> {
  const res = await request(cloud.baseUrl + p);
  assert.equal(res.statusCode, 200, p);
  return (await res.body.json()) as Record<string, unknown>;
}

/** The SOPInstanceUID column of every row of the table, over tabledata.list (all pages). */
async function tableSops(): Promise<string[]> {
  const base = `/bigquery/v2/projects/${P}/datasets/siim_meta/tables/train`;
  const fields = ((await get(base))["schema"] as { fields: { name: string }[] }).fields;
  const sop = fields.findIndex((f) => f.name === "SOPInstanceUID");
  assert.ok(sop >= 0, "the table has a SOPInstanceUID column");
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await get(`${base}/data?maxResults=7${token === undefined ? "" : `&pageToken=${token}`}`);
    for (const row of (page["rows"] ?? []) as { f: { v: string }[] }[]) out.push(row.f[sop]!.v);
    token = page["pageToken"] as string | undefined;
  } while (token !== undefined);
  return out.sort();
}

const ops = (method: string) => cloud.healthcare.operations().filter((o) => o.method.endsWith(method));

test("run with a BigQuery entry and a FHIR export: exit 0, one row per instance, the NDJSON holds the store's resources", async () => {
  const r = await hcexport("run", cfg, "--report", "report.json");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${TABLE.replace(/\./g, "\\.")} holds ${TRAIN} rows`));
  assert.match(
    r.stderr,
    /bigquery train\.bq: created the dataset; granted roles\/bigquery\.dataEditor and roles\/bigquery\.jobUser/,
  );

  // BigQuery: one row per instance of the train store, nothing else.
  const trainSops = cloud.healthcare
    .instances(SIIM_TRAIN_STORE)
    .map((i) => i.sopInstanceUid)
    .sort();
  assert.deepEqual(await tableSops(), trainSops);
  const bq = ops("ExportDicomData").filter((o) => o.destination.startsWith("bq://"));
  assert.deepEqual(
    bq.map((o) => [o.source, o.destination]),
    [[SIIM_TRAIN_STORE, TABLE]],
  );

  // FHIR: one NDJSON file per resource type, together exactly the seeded resources.
  const fhir = path.join(dir, "out", "fhir");
  const files = (await readdir(fhir)).filter((f) => !f.startsWith("."));
  const seeded = cloud.healthcare.fhirStores.get(SIIM_FHIR_STORE)!.resources;
  const types = [...new Set([...seeded.values()].map((v) => String(v["resourceType"])))].sort();
  assert.deepEqual(files.sort(), types);
  assert.ok(types.includes("Patient") && types.includes("DocumentReference"), types.join());
  const got = new Map<string, unknown>();
  for (const f of files) {
    const lines = (await readFile(path.join(fhir, f), "utf8")).split("\n").filter((l) => l !== "");
    for (const line of lines) {
      const res = JSON.parse(line) as { resourceType: string; id: string };
      assert.equal(res.resourceType, f, `${f} holds only ${f} resources`);
      got.set(`${res.resourceType}/${res.id}`, res);
    }
  }
  assert.equal(got.size, seeded.size);
  for (const [key, res] of seeded) assert.deepEqual(got.get(key), res, key);
  assert.deepEqual(
    ops("ExportResources").map((o) => [o.source, o.destination]),
    [[SIIM_FHIR_STORE, "gs://hcexport-demo-bucket/fhir"]],
  );

  // The report shows every lane, with the table's row count.
  const report = JSON.parse(await readFile(path.join(dir, "report.json"), "utf8")) as {
    steps: { key: string; lane?: string; status: string; summary?: string }[];
    tables: { table: string; numRows: number }[];
    mirrors: { prefix: string; downloaded: number }[];
  };
  assert.deepEqual(
    [...new Set(report.steps.map((s) => s.lane).filter((l) => l !== undefined))],
    ["train", "test", "train.bq", "fhir"],
  );
  assert.ok(report.steps.every((s) => s.status === "done"));
  assert.equal(report.steps.find((s) => s.key === "rows:train.bq")?.summary, `${TABLE} holds ${TRAIN} rows`);
  assert.deepEqual(
    report.tables.map((t) => [t.table, t.numRows]),
    [[TABLE, TRAIN]],
  );
  assert.deepEqual(
    report.mirrors.map((m) => [m.prefix, m.downloaded]),
    [
      ["train", TRAIN],
      ["test", TEST],
      ["fhir", types.length],
    ],
  );

  // status shows every lane's steps, the row count among them.
  const status = await hcexport("status", cfg);
  assert.equal(status.code, 0, status.stderr);
  for (const key of ["bigquery train.bq", "export train.bq", "wait train.bq", "export fhir", "mirror fhir"])
    assert.match(status.stdout, new RegExp(`${key.replace(".", "\\.")} +done`), key);
  assert.match(status.stdout, new RegExp(`rows train\\.bq +done ${TABLE.replace(/\./g, "\\.")} holds ${TRAIN} rows`));
});

test("a rerun of the finished run: plan skips the new lanes, the run starts no export and says nothing changed", async () => {
  const plan = await hcexport("plan", cfg, "--json");
  assert.equal(plan.code, 0, plan.stderr);
  const rows = (JSON.parse(plan.stdout.trim().split("\n").at(-1)!) as { plan: { key: string; action: string }[] }).plan;
  const action = Object.fromEntries(rows.map((p) => [p.key, p.action]));
  assert.deepEqual(
    [
      "bigquery:train.bq",
      "export:train.bq",
      "wait:train.bq",
      "rows:train.bq",
      "export:fhir",
      "wait:fhir",
      "mirror:fhir",
    ].map((k) => action[k]),
    ["skip", "skip", "skip", "skip", "skip", "skip", "run"],
    "the mirror runs every time (incremental); everything else of the new lanes is replayed",
  );
  const human = await hcexport("plan", cfg);
  assert.match(human.stdout, /rows:train\.bq +train\.bq +wait:train\.bq +skip/);
  const before = cloud.healthcare.operations().length;
  const media = cloud.requests.mediaGets();
  const again = await hcexport("run", cfg);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /nothing changed: no export started, nothing downloaded/);
  assert.match(again.stdout, /holds 30 rows \(counted by an earlier run\)/);
  assert.equal(cloud.healthcare.operations().length, before, "no operation started");
  assert.equal(cloud.requests.mediaGets(), media, "nothing downloaded");
  assert.deepEqual((await tableSops()).length, TRAIN);
});

test("without the BigQuery roles: the BigQuery lane stops with exit 3 and the fix, the other lanes finish; --grant-iam then completes it with one export", async () => {
  const table = "bq://someone-elses-analytics.meta.train";
  const bucket = "hcx-lanes-second";
  const sub = path.join(dir, "second");
  const config = JSON.parse(await readFile(cfg, "utf8")) as Record<string, unknown> & {
    exports: Array<Record<string, unknown>>;
  };
  const second = path.join(dir, "second.json");
  await writeFile(
    second,
    JSON.stringify({
      ...config,
      bucket: { name: bucket, location: "us-central1" },
      grantIam: false,
      exports: config.exports.map((e) => ({
        ...e,
        dest: `./second/${String(e["prefix"])}`,
        ...(e["bigquery"] === undefined ? {} : { bigquery: { table, writeDisposition: "WRITE_EMPTY" } }),
      })),
      annotations: { ...(config["annotations"] as object), dest: "./second/annotations" },
      fhirExports: [{ prefix: "fhir", dest: "./second/fhir" }],
      stateDir: "./second/.hcexport",
    }),
  );
  // The bucket and its binding exist (granted by hand), so only the BigQuery roles are missing.
  assert.equal((await hcexport("bucket", "ensure", `gs://${bucket}`, "--project", "my-demo-project")).code, 0);
  const grant = await hcexport("iam", "grant", `gs://${bucket}`, "--source-project", "kaggle-siim-healthcare");
  assert.equal(grant.code, 0, grant.stderr);
  const bqOps = () => ops("ExportDicomData").filter((o) => o.destination === table);

  const r = await hcexport("run", second);
  assert.equal(r.code, 3, r.stderr);
  assert.match(
    r.stderr,
    /lacks roles\/bigquery\.dataEditor and roles\/bigquery\.jobUser on project someone-elses-analytics/,
  );
  assert.match(r.stderr, /pass --grant-iam/);
  assert.deepEqual(bqOps(), [], "no BigQuery export was started");
  for (const lane of ["train", "test"])
    assert.equal(
      (await readdir(path.join(sub, lane), { recursive: true })).filter((f) => f.endsWith(".dcm")).length,
      lane === "train" ? TRAIN : TEST,
      `${lane} mirrored although the BigQuery lane failed`,
    );
  assert.ok((await readdir(path.join(sub, "fhir"))).includes("Patient"));
  const status = await hcexport("status", second);
  assert.match(status.stdout, /bigquery train\.bq +not yet .*\(next run: run\)/);
  assert.match(status.stdout, /export train +done/);

  const fixed = await hcexport("run", second, "--grant-iam");
  assert.equal(fixed.code, 0, fixed.stderr);
  assert.match(fixed.stdout, /someone-elses-analytics\.meta\.train holds 30 rows/);
  assert.equal(bqOps().length, 1, "one BigQuery export for the table");
});
