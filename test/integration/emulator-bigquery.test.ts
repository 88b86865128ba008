import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import type { GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { BIGQUERY_PERMISSION_MESSAGE } from "../../src/emulator/bigquery/dicom-export.ts";
import { discoveryDocument } from "../../src/emulator/bigquery/discovery.ts";

const P = "my-bq-project";
const AGENT = `serviceAccount:${SIIM.serviceAgent}`;
const BQ = `/bigquery/v2/projects/${P}`;
const TRAIN = 12;
let cloud: LocalCloud;

async function call(method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(cloud.baseUrl + p, {
    method: method as "GET",
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, json: () => JSON.parse(text) };
}

async function exportTo(table: string, extra: Record<string, unknown> = {}, version = "v1") {
  const r = await call("POST", `/${version}/${SIIM_TRAIN_STORE}:export`, {
    bigqueryDestination: { tableUri: `bq://${P}.${table}`, ...extra },
  });
  assert.equal(r.status, 200, r.text);
  const name = r.json().name as string;
  for (let i = 0; i < 1000; i++) {
    const op = (await call("GET", `/${version}/${name}`)).json();
    if (op.done === true) return op;
    await new Promise((res) => setTimeout(res, 20));
  }
  throw new Error(`${name} did not finish`);
}

async function projectPolicy(project = P) {
  return (await call("POST", `/v1/projects/${project}:getIamPolicy`, {})).json();
}

async function grantProject(roles: string[]): Promise<void> {
  const p = await projectPolicy();
  for (const role of roles) p.bindings.push({ role, members: [AGENT] });
  const r = await call("POST", `/v1/projects/${P}:setIamPolicy`, { policy: p });
  assert.equal(r.status, 200, r.text);
}

async function rowsOf(
  table: string,
): Promise<{ schema: { name: string; type: string; mode: string }[]; rows: { f: { v: unknown }[] }[] }> {
  const t = (await call("GET", `${BQ}/datasets/${table.replace(".", "/tables/")}`)).json();
  const d = (await call("GET", `${BQ}/datasets/${table.replace(".", "/tables/")}/data`)).json();
  return { schema: t.schema.fields, rows: d.rows ?? [] };
}

before(async () => {
  cloud = await startLocalCloud({
    dataset: { train: TRAIN, test: 3, instanceBytes: 4096 },
    exportInstancesPerSecond: 5000,
  });
});
after(() => cloud.close());

describe("datasets", () => {
  test("insert, get, duplicate 409, bad id 400, the default access entries", async () => {
    const r = await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "ds_a" }, location: "EU" });
    assert.equal(r.status, 200, r.text);
    const d = r.json();
    assert.equal(d.kind, "bigquery#dataset");
    assert.equal(d.id, `${P}:ds_a`);
    assert.deepEqual(d.datasetReference, { datasetId: "ds_a", projectId: P });
    assert.equal(d.location, "EU");
    assert.match(d.creationTime, /^\d{13}$/);
    assert.equal(typeof d.etag, "string");
    assert.deepEqual(d.access, [
      { role: "WRITER", specialGroup: "projectWriters" },
      { role: "OWNER", specialGroup: "projectOwners" },
      { role: "READER", specialGroup: "projectReaders" },
    ]);
    assert.deepEqual((await call("GET", `${BQ}/datasets/ds_a`)).json(), d);
    const dup = await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "ds_a" } });
    assert.equal(dup.status, 409);
    assert.equal(dup.json().error.message, `Already Exists: Dataset ${P}:ds_a`);
    assert.equal(dup.json().error.errors[0].reason, "duplicate");
    const bad = await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "has-dash" } });
    assert.equal(bad.status, 400);
    assert.match(bad.json().error.message, /Invalid dataset ID "has-dash"/);
    const missing = await call("GET", `${BQ}/datasets/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json().error.message, `Not found: Dataset ${P}:nope`);
  });

  test("access entries: IAM data roles come back as legacy roles; every entity kind; one entity per entry", async () => {
    const access = [
      { role: "roles/bigquery.dataEditor", userByEmail: SIIM.serviceAgent },
      { role: "roles/bigquery.dataViewer", specialGroup: "projectReaders" },
      { role: "roles/bigquery.dataOwner", iamMember: "principal://x/y" },
      { role: "roles/bigquery.metadataViewer", groupByEmail: "g@example.com" },
    ];
    const r = await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "ds_access" }, access });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.json().access.map((e: { role: string }) => e.role),
      ["WRITER", "READER", "OWNER", "roles/bigquery.metadataViewer"],
    );
    const two = await call("POST", `${BQ}/datasets`, {
      datasetReference: { datasetId: "ds_bad_access" },
      access: [{ role: "READER", userByEmail: "a@b.c", domain: "b.c" }],
    });
    assert.equal(two.status, 400);
    assert.match(two.json().error.message, /exactly one of/);
  });

  test("patch and update: If-Match with a stale etag is 412, the current one succeeds and changes the etag", async () => {
    const d = (await call("GET", `${BQ}/datasets/ds_a`)).json();
    const ok = await call("PATCH", `${BQ}/datasets/ds_a`, { description: "first" }, { "if-match": d.etag });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json().description, "first");
    assert.notEqual(ok.json().etag, d.etag);
    assert.deepEqual(ok.json().access, d.access, "PATCH without access keeps it");
    const stale = await call("PATCH", `${BQ}/datasets/ds_a`, { description: "second" }, { "if-match": d.etag });
    assert.equal(stale.status, 412);
    assert.equal(stale.json().error.errors[0].reason, "conditionNotMet");
    assert.equal((await call("GET", `${BQ}/datasets/ds_a`)).json().description, "first");
    const put = await call("PUT", `${BQ}/datasets/ds_a`, {
      friendlyName: "A",
      access: [{ role: "OWNER", specialGroup: "projectOwners" }],
    });
    assert.equal(put.status, 200, put.text);
    assert.equal(put.json().description, undefined, "update replaces the resource");
    assert.deepEqual(put.json().access, [{ role: "OWNER", specialGroup: "projectOwners" }]);
  });

  test("list is paged with maxResults/pageToken; delete needs deleteContents when tables exist", async () => {
    for (const id of ["ds_l1", "ds_l2", "ds_l3"])
      assert.equal((await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: id } })).status, 200);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = (
        await call("GET", `${BQ}/datasets?maxResults=2${token === "" ? "" : `&pageToken=${token}`}`)
      ).json();
      assert.equal(page.kind, "bigquery#datasetList");
      seen.push(...page.datasets.map((d: { datasetReference: { datasetId: string } }) => d.datasetReference.datasetId));
      token = page.nextPageToken ?? "";
      pages++;
    } while (token !== "");
    assert.ok(pages >= 3);
    assert.deepEqual(seen, [...seen].sort());
    assert.ok(["ds_a", "ds_access", "ds_l1", "ds_l2", "ds_l3"].every((id) => seen.includes(id)));
    const t = await call("POST", `${BQ}/datasets/ds_l1/tables`, {
      tableReference: { tableId: "t" },
      schema: { fields: [{ name: "x", type: "STRING" }] },
    });
    assert.equal(t.status, 200, t.text);
    const inUse = await call("DELETE", `${BQ}/datasets/ds_l1`);
    assert.equal(inUse.status, 400);
    assert.equal(inUse.json().error.errors[0].reason, "resourceInUse");
    assert.equal((await call("DELETE", `${BQ}/datasets/ds_l1?deleteContents=true`)).status, 204);
    assert.equal((await call("GET", `${BQ}/datasets/ds_l1`)).status, 404);
  });
});

describe("tables and tabledata", () => {
  before(async () => {
    await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "enc" } });
    const d = cloud.bigquery.dataset(P, "enc")!;
    const schema = [
      { name: "s", type: "STRING" as const, mode: "NULLABLE" as const },
      { name: "n", type: "INTEGER" as const, mode: "NULLABLE" as const },
      { name: "tags", type: "STRING" as const, mode: "REPEATED" as const },
      {
        name: "rec",
        type: "RECORD" as const,
        mode: "NULLABLE" as const,
        fields: [
          { name: "a", type: "FLOAT" as const, mode: "NULLABLE" as const },
          { name: "b", type: "DATE" as const, mode: "REPEATED" as const },
        ],
      },
      { name: "ts", type: "TIMESTAMP" as const, mode: "NULLABLE" as const },
    ];
    const rows = Array.from({ length: 5 }, (_, i) => ({
      s: i === 1 ? null : `row${i}`,
      n: i,
      tags: i === 0 ? [] : ["x", `y${i}`],
      rec: i === 2 ? null : { a: i + 0.5, b: ["2020-01-0" + (i + 1)] },
      ts: 1_517_875_190_000_000 + i,
    }));
    cloud.bigquery.writeTable(d, "t", schema, rows, false);
  });

  test("tables.get: schema, numRows/numBytes as strings, type TABLE; tables.list", async () => {
    const t = (await call("GET", `${BQ}/datasets/enc/tables/t`)).json();
    assert.equal(t.kind, "bigquery#table");
    assert.equal(t.id, `${P}:enc.t`);
    assert.deepEqual(t.tableReference, { projectId: P, datasetId: "enc", tableId: "t" });
    assert.equal(t.numRows, "5");
    assert.match(t.numBytes, /^[1-9]\d*$/);
    assert.equal(t.type, "TABLE");
    assert.match(t.creationTime, /^\d{13}$/);
    assert.deepEqual(t.schema.fields[3], {
      name: "rec",
      type: "RECORD",
      mode: "NULLABLE",
      fields: [
        { name: "a", type: "FLOAT", mode: "NULLABLE" },
        { name: "b", type: "DATE", mode: "REPEATED" },
      ],
    });
    const list = (await call("GET", `${BQ}/datasets/enc/tables`)).json();
    assert.equal(list.kind, "bigquery#tableList");
    assert.equal(list.totalItems, 1);
    assert.deepEqual(list.tables[0].tableReference, t.tableReference);
    assert.equal(
      (await call("GET", `${BQ}/datasets/enc/tables/none`)).json().error.message,
      `Not found: Table ${P}:enc.none`,
    );
  });

  test("tabledata.list: the {f:[{v}]} encoding, nested RECORD and REPEATED, NULL, TIMESTAMP forms", async () => {
    const d = (await call("GET", `${BQ}/datasets/enc/tables/t/data?maxResults=2`)).json();
    assert.equal(d.kind, "bigquery#tableDataList");
    assert.equal(d.totalRows, "5");
    assert.deepEqual(d.rows[0], {
      f: [
        { v: "row0" },
        { v: "0" },
        { v: [] },
        { v: { f: [{ v: "0.5" }, { v: [{ v: "2020-01-01" }] }] } },
        { v: "1.51787519E9" },
      ],
    });
    assert.deepEqual(d.rows[1].f.slice(0, 3), [{ v: null }, { v: "1" }, { v: [{ v: "x" }, { v: "y1" }] }]);
    const third = (
      await call(
        "GET",
        `${BQ}/datasets/enc/tables/t/data?startIndex=2&maxResults=1&formatOptions.useInt64Timestamp=true`,
      )
    ).json();
    assert.deepEqual(third.rows[0].f[3], { v: null });
    assert.deepEqual(third.rows[0].f[4], { v: "1517875190000002" });
    const iso = (
      await call(
        "GET",
        `${BQ}/datasets/enc/tables/t/data?maxResults=1&formatOptions.timestampOutputFormat=ISO8601_STRING`,
      )
    ).json();
    assert.equal(iso.rows[0].f[4].v, "2018-02-05T23:59:50.000000Z");
  });

  test("tabledata.list pages with pageToken until every row was seen once", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = (
        await call("GET", `${BQ}/datasets/enc/tables/t/data?maxResults=2${token ? `&pageToken=${token}` : ""}`)
      ).json();
      seen.push(...page.rows.map((r: { f: { v: string }[] }) => r.f[1]!.v));
      token = page.pageToken;
    } while (token !== undefined);
    assert.deepEqual(seen, ["0", "1", "2", "3", "4"]);
    assert.equal((await call("GET", `${BQ}/datasets/enc/tables/t/data?pageToken=garbage`)).status, 400);
    const past = (await call("GET", `${BQ}/datasets/enc/tables/t/data?startIndex=9`)).json();
    assert.equal(past.totalRows, "5");
    assert.equal(past.rows, undefined);
  });

  test("jobs.query answers COUNT(*) (standard and legacy names) and 501 for anything else", async () => {
    for (const query of [
      `SELECT COUNT(*) FROM \`${P}.enc.t\``,
      `select count(*) from ${P}.enc.t`,
      `SELECT COUNT(*) FROM enc.t`,
      `SELECT COUNT(*) FROM [${P}:enc.t]`,
    ]) {
      const r = await call("POST", `${BQ}/queries`, { query, useLegacySql: query.includes("[") });
      assert.equal(r.status, 200, `${query}: ${r.text}`);
      const q = r.json();
      assert.equal(q.kind, "bigquery#queryResponse");
      assert.equal(q.jobComplete, true);
      assert.equal(q.totalRows, "1");
      assert.deepEqual(q.rows, [{ f: [{ v: "5" }] }]);
      assert.deepEqual(q.schema.fields, [{ name: "f0_", type: "INTEGER", mode: "NULLABLE" }]);
    }
    const other = await call("POST", `${BQ}/queries`, { query: `SELECT s FROM \`${P}.enc.t\`` });
    assert.equal(other.status, 501);
    assert.equal(other.json().error.status, "UNIMPLEMENTED");
    assert.equal((await call("POST", `${BQ}/queries`, { query: "SELECT COUNT(*) FROM enc.missing" })).status, 404);
  });

  test("jobs.insert → jobs.get (statementType) → getQueryResults", async () => {
    const ins = await call("POST", `${BQ}/jobs`, {
      jobReference: { projectId: P, jobId: "job_count_1" },
      configuration: { query: { query: `SELECT COUNT(*) FROM \`${P}.enc.t\``, useLegacySql: false } },
    });
    assert.equal(ins.status, 200, ins.text);
    assert.equal(ins.json().status.state, "DONE");
    const job = (await call("GET", `${BQ}/jobs/job_count_1?location=US`)).json();
    assert.equal(job.statistics.query.statementType, "SELECT");
    assert.deepEqual(job.jobReference, { projectId: P, jobId: "job_count_1", location: "US" });
    const res = (await call("GET", `${BQ}/queries/job_count_1`)).json();
    assert.deepEqual(res.rows, [{ f: [{ v: "5" }] }]);
    assert.equal(
      (
        await call("POST", `${BQ}/jobs`, {
          jobReference: { jobId: "job_count_1" },
          configuration: { query: { query: "SELECT COUNT(*) FROM enc.t" } },
        })
      ).status,
      409,
    );
    assert.equal((await call("POST", `${BQ}/jobs`, { configuration: { load: {} } })).status, 501);
  });

  test("tables.insert with a nested schema (409 when it exists), tables.delete (204, then 404)", async () => {
    const body = {
      tableReference: { tableId: "scratch" },
      schema: { fields: [{ name: "r", type: "STRUCT", mode: "REPEATED", fields: [{ name: "x", type: "INT64" }] }] },
    };
    const made = await call("POST", `${BQ}/datasets/enc/tables`, body);
    assert.equal(made.status, 200, made.text);
    assert.deepEqual(made.json().schema.fields, [
      { name: "r", type: "RECORD", mode: "REPEATED", fields: [{ name: "x", type: "INTEGER", mode: "NULLABLE" }] },
    ]);
    assert.equal(made.json().numRows, "0");
    assert.equal((await call("POST", `${BQ}/datasets/enc/tables`, body)).status, 409);
    const badSchema = await call("POST", `${BQ}/datasets/enc/tables`, {
      tableReference: { tableId: "bad" },
      schema: { fields: [{ name: "1x", type: "STRING" }] },
    });
    assert.equal(badSchema.status, 400);
    const del = await call("DELETE", `${BQ}/datasets/enc/tables/scratch`);
    assert.equal(del.status, 204);
    assert.equal(del.text, "");
    assert.equal((await call("GET", `${BQ}/datasets/enc/tables/scratch`)).status, 404);
    assert.equal((await call("DELETE", `${BQ}/datasets/enc/tables/scratch`)).status, 404);
  });

  test("the BIGQUERY_EMULATOR_HOST form (no /bigquery/v2) serves the same resources", async () => {
    assert.deepEqual(
      (await call("GET", `/projects/${P}/datasets/enc/tables/t`)).json(),
      (await call("GET", `${BQ}/datasets/enc/tables/t`)).json(),
    );
  });

  test("the discovery document bq fetches is the SDK's, pointed at the local cloud", async (t) => {
    if (discoveryDocument(cloud.baseUrl) === undefined)
      return t.skip("no Google Cloud SDK bq discovery document installed");
    const doc = (await call("GET", "/$discovery/rest?version=v2")).json();
    assert.equal(doc.rootUrl, `${cloud.baseUrl}/`);
    assert.equal(doc.baseUrl, `${cloud.baseUrl}/bigquery/v2/`);
    assert.equal(doc.servicePath, "bigquery/v2/");
    assert.equal(doc.resources.tabledata.methods.list.id, "bigquery.tabledata.list");
  });
});

describe("project IAM on Resource Manager", () => {
  test("getIamPolicy has the owner and the service agent; a stale etag is 409 ABORTED; version 1 refuses conditions", async () => {
    const p = await projectPolicy(SIIM.project);
    assert.deepEqual(p.bindings, [
      { role: "roles/healthcare.serviceAgent", members: [AGENT] },
      { role: "roles/owner", members: ["user:owner@example.com"] },
    ]);
    assert.match(p.etag, /^Bw/);
    const next = structuredClone(p);
    next.bindings.push({ role: "roles/viewer", members: ["user:v@example.com"] });
    const ok = await call("POST", `/v1/projects/${SIIM.project}:setIamPolicy`, { policy: next });
    assert.equal(ok.status, 200, ok.text);
    assert.notEqual(ok.json().etag, p.etag);
    const stale = await call("POST", `/v1/projects/${SIIM.project}:setIamPolicy`, { policy: next });
    assert.equal(stale.status, 409);
    assert.equal(stale.json().error.status, "ABORTED");
    assert.match(stale.json().error.message, /^There were concurrent policy changes/);
    const cond = structuredClone(ok.json());
    cond.bindings.push({
      role: "roles/viewer",
      members: ["user:c@example.com"],
      condition: { title: "t", expression: "true" },
    });
    assert.equal((await call("POST", `/v1/projects/${SIIM.project}:setIamPolicy`, { policy: cond })).status, 400);
    cond.version = 3;
    assert.equal((await call("POST", `/v3/projects/${SIIM.project}:setIamPolicy`, { policy: cond })).status, 200);
    assert.deepEqual((await projectPolicy(SIIM.project)).bindings.at(-1).condition, { title: "t", expression: "true" });
  });
});

describe("DICOM export to BigQuery", () => {
  before(async () => {
    await call("POST", `${BQ}/datasets`, { datasetReference: { datasetId: "siim" } });
  });

  test("without the roles: done with PERMISSION_DENIED (code 7) and no table", async () => {
    const op = await exportTo("siim.denied");
    assert.deepEqual(op.error, { code: 7, message: BIGQUERY_PERMISSION_MESSAGE });
    assert.equal(op.metadata.counter.failure, String(TRAIN));
    assert.equal((await call("GET", `${BQ}/datasets/siim/tables/denied`)).status, 404);
  });

  test("dataEditor on the dataset (access entry) without jobUser is still denied", async () => {
    const d = (await call("GET", `${BQ}/datasets/siim`)).json();
    const r = await call("PATCH", `${BQ}/datasets/siim`, {
      access: [...d.access, { role: "WRITER", userByEmail: SIIM.serviceAgent }],
    });
    assert.equal(r.status, 200, r.text);
    assert.equal((await exportTo("siim.denied")).error.code, 7);
  });

  test("a missing dataset fails the operation (the export creates tables, not datasets)", async () => {
    const op = await exportTo("no_such_dataset.t");
    assert.equal(op.error.code, 5);
    assert.match(op.error.message, /dataset my-bq-project:no_such_dataset not found/);
  });

  test("bad destinations are 400: malformed tableUri, unknown field, both destinations, bad writeDisposition", async () => {
    const post = (body: unknown) => call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, body);
    assert.equal((await post({ bigqueryDestination: { tableUri: "bq://onlytwo.parts" } })).status, 400);
    assert.equal((await post({ bigqueryDestination: { tableUri: `bq://${P}.siim.t`, schemaJson: {} } })).status, 400);
    assert.equal(
      (await post({ bigqueryDestination: { tableUri: `bq://${P}.siim.t` }, gcsDestination: { uriPrefix: "gs://b/p" } }))
        .status,
      400,
    );
    assert.equal(
      (await post({ bigqueryDestination: { tableUri: `bq://${P}.siim.t`, writeDisposition: "WRITE_SOMETIMES" } }))
        .status,
      400,
    );
  });

  test("with jobUser on the project: one row per instance, keyword columns, VR types, PN and repeated fields", async () => {
    await grantProject(["roles/bigquery.jobUser"]);
    const op = await exportTo("siim.train");
    assert.equal(op.error, undefined, JSON.stringify(op.error));
    assert.equal(op.metadata.counter.success, String(TRAIN));
    const { schema, rows } = await rowsOf("siim.train");
    assert.equal(rows.length, TRAIN);
    const col = (name: string) => schema.findIndex((f) => f.name === name);
    const field = (name: string) => schema[col(name)]!;
    assert.deepEqual(field("SOPInstanceUID"), { name: "SOPInstanceUID", type: "STRING", mode: "NULLABLE" });
    assert.deepEqual(field("StudyDate"), { name: "StudyDate", type: "DATE", mode: "NULLABLE" });
    assert.deepEqual(field("StudyTime"), { name: "StudyTime", type: "TIME", mode: "NULLABLE" });
    assert.deepEqual(field("Rows"), { name: "Rows", type: "INTEGER", mode: "NULLABLE" });
    assert.deepEqual(field("PixelSpacing"), { name: "PixelSpacing", type: "STRING", mode: "REPEATED" });
    assert.equal(field("PatientName").type, "RECORD");
    assert.equal(col("PixelData"), -1, "bulk data is not exported");
    assert.equal(col("TransferSyntaxUID"), -1, "file meta is not exported");
    const instances = cloud.healthcare.instances(SIIM_TRAIN_STORE) as readonly GeneratedInstance[];
    const sops = rows.map((r) => r.f[col("SOPInstanceUID")]!.v);
    assert.deepEqual([...sops].sort(), instances.map((i) => i.sopInstanceUid).sort(), "one row per instance");
    const first = instances.find((i) => i.sopInstanceUid === sops[0])!;
    const row = rows[0]!.f;
    assert.equal(row[col("StudyInstanceUID")]!.v, first.studyUid);
    assert.equal(row[col("PatientSex")]!.v, first.patientSex);
    assert.equal(row[col("PatientAge")]!.v, `${String(first.patientAge).padStart(3, "0")}Y`);
    assert.equal(row[col("StudyDate")]!.v, "1901-01-01");
    assert.equal(row[col("Rows")]!.v, String(first.side));
    assert.deepEqual(row[col("PixelSpacing")]!.v, [{ v: "0.168" }, { v: "0.168" }]);
    assert.deepEqual(row[col("PatientName")]!.v, { f: [{ v: first.patientId }, { v: null }, { v: null }] });
    assert.deepEqual(row[col("AccessionNumber")]!.v, null, "an empty element is a NULL cell");
    const count = (await call("POST", `${BQ}/queries`, { query: `SELECT COUNT(*) FROM \`${P}.siim.train\`` })).json();
    assert.deepEqual(count.rows, [{ f: [{ v: String(TRAIN) }] }]);
  });

  test("WRITE_EMPTY on a non-empty table fails and leaves it; force unset fails on any existing table", async () => {
    const op = await exportTo("siim.train", { writeDisposition: "WRITE_EMPTY" });
    assert.equal(op.error.code, 6);
    assert.match(op.error.message, /already exists and is not empty/);
    assert.equal((await exportTo("siim.train")).error.code, 6);
    assert.equal((await call("GET", `${BQ}/datasets/siim/tables/train`)).json().numRows, String(TRAIN));
    await call("POST", `${BQ}/datasets/siim/tables`, { tableReference: { tableId: "empty" }, schema: { fields: [] } });
    assert.equal(
      (await exportTo("siim.empty")).error?.code,
      6,
      "force=false: an existing table is an error even when empty",
    );
    const ok = await exportTo("siim.empty", { writeDisposition: "WRITE_EMPTY" });
    assert.equal(ok.error, undefined, "WRITE_EMPTY completes into an existing empty table");
    assert.equal((await call("GET", `${BQ}/datasets/siim/tables/empty`)).json().numRows, String(TRAIN));
  });

  test("WRITE_TRUNCATE (and force) replaces; WRITE_APPEND appends", async () => {
    const before = (await call("GET", `${BQ}/datasets/siim/tables/train`)).json();
    assert.equal((await exportTo("siim.train", { writeDisposition: "WRITE_TRUNCATE" })).error, undefined);
    const after = (await call("GET", `${BQ}/datasets/siim/tables/train`)).json();
    assert.equal(after.numRows, String(TRAIN));
    assert.notEqual(after.etag, before.etag);
    assert.equal(after.creationTime, before.creationTime, "truncate keeps the table");
    assert.equal((await exportTo("siim.train", { force: true })).error, undefined);
    assert.equal((await call("GET", `${BQ}/datasets/siim/tables/train`)).json().numRows, String(TRAIN));
    assert.equal((await exportTo("siim.train", { writeDisposition: "WRITE_APPEND" }, "v1beta1")).error, undefined);
    const { rows, schema } = await rowsOf("siim.train");
    assert.equal(rows.length, 2 * TRAIN);
    const sop = schema.findIndex((f) => f.name === "SOPInstanceUID");
    assert.equal(new Set(rows.map((r) => r.f[sop]!.v)).size, TRAIN, "each instance twice");
  });

  test("revoking dataEditor from the dataset and project: denied again", async () => {
    const d = (await call("GET", `${BQ}/datasets/siim`)).json();
    const access = d.access.filter((e: { userByEmail?: string }) => e.userByEmail !== SIIM.serviceAgent);
    assert.equal((await call("PATCH", `${BQ}/datasets/siim`, { access }, { "if-match": d.etag })).status, 200);
    assert.equal((await exportTo("siim.train", { writeDisposition: "WRITE_TRUNCATE" })).error.code, 7);
    await grantProject(["roles/bigquery.dataEditor"]);
    assert.equal((await exportTo("siim.train", { writeDisposition: "WRITE_TRUNCATE" })).error, undefined);
  });
});
