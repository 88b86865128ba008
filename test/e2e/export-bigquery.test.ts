import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { requireBuiltCli, spawnCli } from "../support/chaos.ts";

// `hcexport export STORE bq://P.D.T` as a user runs it (the built CLI, spawned) against the local
// cloud: the missing roles stop it with exit 3 and the fix; --grant-iam edits the project policy
// keeping every other binding byte for byte; the table then holds exactly one row per instance.

const P = "my-analytics-project";
const TABLE = `bq://${P}.siim_meta.train`;
const TRAIN = 25;
const AGENT = `serviceAccount:${SIIM.serviceAgent}`;
let cloud: LocalCloud;
let cwd: string;
let cli: string;

async function call(method: string, p: string, body?: unknown) {
  const res = await request(cloud.baseUrl + p, {
    method: method as "GET",
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

/** Other people's bindings, including a conditional one and an audit config, that a grant must keep. */
const OTHERS = [
  { role: "roles/bigquery.dataViewer", members: ["group:analysts@example.com", "user:ana@example.com"] },
  {
    role: "roles/bigquery.jobUser",
    members: [AGENT],
    condition: { title: "weekdays", description: "only on weekdays", expression: "request.time.getDayOfWeek() < 5" },
  },
  { role: "roles/storage.objectViewer", members: ["serviceAccount:etl@my-analytics-project.iam.gserviceaccount.com"] },
];

before(async () => {
  cli = requireBuiltCli();
  cwd = await mkdtemp(path.join(os.tmpdir(), "hcx-bq-e2e-"));
  cloud = await startLocalCloud({
    dataset: { train: TRAIN, test: 4, instanceBytes: 4096 },
    exportInstancesPerSecond: 1000,
  });
  const p = (await call("POST", `/v1/projects/${P}:getIamPolicy`, {})).json;
  const r = await call("POST", `/v1/projects/${P}:setIamPolicy`, {
    policy: {
      ...p,
      version: 3,
      bindings: [...(p["bindings"] as unknown[]), ...OTHERS],
      auditConfigs: [{ service: "allServices", auditLogConfigs: [{ logType: "DATA_READ" }] }],
    },
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
});
after(async () => {
  await cloud.close();
  await rm(cwd, { recursive: true, force: true });
});

const hcexport = (...args: string[]) => spawnCli(cli, ["--emulator", cloud.baseUrl, ...args], { cwd });

test("without --grant-iam: exit 3 with the fix, the dataset created, nothing granted or started", async () => {
  const before = (await call("POST", `/v1/projects/${P}:getIamPolicy`, {})).json;
  const r = await hcexport("export", SIIM_TRAIN_STORE, TABLE, "--wait");
  assert.equal(r.code, 3, r.stderr);
  assert.match(
    r.stderr,
    /service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com lacks roles\/bigquery\.dataEditor and roles\/bigquery\.jobUser/,
  );
  assert.match(
    r.stderr,
    /fix: pass --grant-iam .* gcloud projects add-iam-policy-binding my-analytics-project --member=serviceAccount:service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com --role=roles\/bigquery\.dataEditor/,
  );
  assert.deepEqual(
    (await call("POST", `/v1/projects/${P}:getIamPolicy`, {})).json,
    before,
    "policy untouched (same etag)",
  );
  assert.equal(
    (await call("GET", `/bigquery/v2/projects/${P}/datasets/siim_meta`)).status,
    200,
    "the dataset was created",
  );
  assert.equal(cloud.healthcare.operations().length, 0, "no export started");
});

test("--wait --grant-iam: grants both roles keeping every other binding, exports, prints the row count", async () => {
  const before = (await call("POST", `/v1/projects/${P}:getIamPolicy`, {})).json;
  const r = await hcexport(
    "export",
    SIIM_TRAIN_STORE,
    TABLE,
    "--wait",
    "--grant-iam",
    "--write-disposition",
    "write-truncate",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /✔ granted roles\/bigquery\.dataEditor and roles\/bigquery\.jobUser on project my-analytics-project/,
  );
  assert.match(r.stdout, new RegExp(`operations/\\d+: done, ${TABLE.replace(/\./g, "\\.")} holds ${TRAIN} rows\\n$`));
  const after = (await call("POST", `/v1/projects/${P}:getIamPolicy`, {})).json;
  const was = before["bindings"] as unknown[];
  const now = after["bindings"] as unknown[];
  assert.deepEqual(
    now.slice(0, was.length).map((b) => JSON.stringify(b)),
    was.map((b) => JSON.stringify(b)),
    "every other binding byte for byte",
  );
  assert.deepEqual(
    now.slice(was.length),
    [
      { role: "roles/bigquery.dataEditor", members: [AGENT] },
      { role: "roles/bigquery.jobUser", members: [AGENT] },
    ],
    "the conditional jobUser binding does not count and is not rewritten: an unconditional one is added",
  );
  assert.equal(after["version"], 3);
  assert.deepEqual(after["auditConfigs"], before["auditConfigs"]);
  const table = (await call("GET", `/bigquery/v2/projects/${P}/datasets/siim_meta/tables/train`)).json;
  assert.equal(table["numRows"], String(TRAIN));
  const data = (await call("GET", `/bigquery/v2/projects/${P}/datasets/siim_meta/tables/train/data`)).json;
  const fields = (table["schema"] as { fields: { name: string }[] }).fields;
  const sop = fields.findIndex((f) => f.name === "SOPInstanceUID");
  const sops = (data["rows"] as { f: { v: string }[] }[]).map((row) => row.f[sop]!.v).sort();
  assert.deepEqual(
    sops,
    cloud.healthcare
      .instances(SIIM_TRAIN_STORE)
      .map((i) => i.sopInstanceUid)
      .sort(),
    "one row per instance",
  );
});

test("again with --json and the default disposition: exit 4 (table not empty), the rows untouched; WRITE_TRUNCATE keeps one row per instance", async () => {
  const empty = await hcexport(
    "--json",
    "export",
    SIIM_TRAIN_STORE,
    TABLE,
    "--wait",
    "--write-disposition",
    "WRITE_EMPTY",
  );
  assert.equal(empty.code, 4, empty.stderr);
  const events = empty.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { kind: string; message?: string });
  assert.ok(
    events.every((e) => typeof e.kind === "string"),
    "NDJSON only on stdout",
  );
  assert.match(JSON.stringify(events.at(-1)), /already exists and is not empty/);
  assert.match(
    JSON.stringify(events.at(-1)),
    /pass --write-disposition WRITE_TRUNCATE to replace them or WRITE_APPEND/,
  );
  const truncate = await hcexport(
    "--json",
    "export",
    SIIM_TRAIN_STORE,
    TABLE,
    "--wait",
    "--write-disposition",
    "WRITE_TRUNCATE",
  );
  assert.equal(truncate.code, 0, truncate.stderr);
  const result = JSON.parse(truncate.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
  assert.equal(result["kind"], "result");
  assert.equal(result["numRows"], TRAIN);
  assert.deepEqual(result["granted"], []);
});

test("a malformed table URI or disposition is exit 2 before any request", async () => {
  const count = cloud.requests.entries.length;
  const bad = await hcexport("export", SIIM_TRAIN_STORE, "bq://only.two");
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /bq:\/\/PROJECT\.DATASET\.TABLE/);
  const wd = await hcexport("export", SIIM_TRAIN_STORE, TABLE, "--write-disposition", "sometimes");
  assert.equal(wd.code, 2, wd.stderr);
  const gs = await hcexport(
    "export",
    SIIM_TRAIN_STORE,
    "gs://some-bucket/train",
    "--write-disposition",
    "WRITE_APPEND",
  );
  assert.equal(gs.code, 2, gs.stderr);
  assert.match(gs.stderr, /--write-disposition applies to bq:\/\/ destinations only/);
  assert.equal(cloud.requests.entries.length, count);
});
