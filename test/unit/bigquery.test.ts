import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { validateConfig } from "../../src/config/schema.ts";
import type { Clock } from "../../src/core/clock.ts";
import { HttpError, PermissionError } from "../../src/core/errors.ts";
import { parseTableUri } from "../../src/core/resource-names.ts";
import type { BigQueryAdmin, DatasetInfo } from "../../src/gcp/bigquery.ts";
import { exportBody, type HealthcareApi, type Operation } from "../../src/gcp/healthcare.ts";
import { exportToBigQuery } from "../../src/pipeline/bigquery-lane.ts";
import { grantBigQueryAccess, missingBigQueryRoles, withBigQueryRoles } from "../../src/workflow/bigquery-access.ts";
import type { Policy } from "../../src/workflow/iam-policy.ts";
import { parseCountQuery } from "../../src/emulator/bigquery/jobs.ts";
import { dicomDate, dicomDateTime, dicomTime } from "../../src/emulator/bigquery/dicom-rows.ts";
import { parseBigQueryDestination } from "../../src/emulator/bigquery/dicom-export.ts";
import { timestampSeconds } from "../../src/emulator/bigquery/table-schema.ts";

const AGENT = "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";
const MEMBER = `serviceAccount:${AGENT}`;
const STORE =
  "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train";

const base: Policy = {
  version: 3,
  etag: "BwX1",
  bindings: [
    { role: "roles/owner", members: ["user:o@example.com"] },
    { role: "roles/bigquery.dataEditor", members: [MEMBER], condition: { title: "t", expression: "false" } },
    { role: "roles/bigquery.jobUser", members: ["user:j@example.com"], extraField: { kept: true } },
  ],
  auditConfigs: [{ service: "allServices" }],
};

describe("BigQuery roles: the pure check and edit", () => {
  test("missing roles: conditional bindings do not count; supersets and a dataset WRITER entry do", () => {
    assert.deepEqual(missingBigQueryRoles(base, MEMBER), ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]);
    assert.deepEqual(
      missingBigQueryRoles({ bindings: [{ role: "roles/bigquery.admin", members: [MEMBER] }] }, MEMBER),
      [],
    );
    assert.deepEqual(missingBigQueryRoles({ bindings: [{ role: "roles/bigquery.user", members: [MEMBER] }] }, MEMBER), [
      "roles/bigquery.dataEditor",
    ]);
    assert.deepEqual(
      missingBigQueryRoles({ bindings: [{ role: "roles/bigquery.jobUser", members: [MEMBER] }] }, MEMBER, [
        { role: "WRITER", userByEmail: AGENT },
      ]),
      [],
    );
    assert.deepEqual(
      missingBigQueryRoles({ bindings: [] }, MEMBER, [
        { role: "READER", userByEmail: AGENT },
        { role: "OWNER", iamMember: "user:x@y.z" },
      ]),
      ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"],
    );
  });

  test("the edit adds unconditional bindings and keeps every other binding, member, condition and field", () => {
    const { policy, changed } = withBigQueryRoles(base, MEMBER, [
      "roles/bigquery.dataEditor",
      "roles/bigquery.jobUser",
    ]);
    assert.equal(changed, true);
    assert.deepEqual(policy.bindings, [
      base.bindings![0],
      base.bindings![1],
      { role: "roles/bigquery.jobUser", members: ["user:j@example.com", MEMBER], extraField: { kept: true } },
      { role: "roles/bigquery.dataEditor", members: [MEMBER] },
    ]);
    assert.equal(policy.etag, "BwX1", "the read etag goes back with the write");
    assert.equal(policy.version, 3);
    assert.deepEqual(policy["auditConfigs"], base["auditConfigs"]);
    assert.equal(base.bindings!.length, 3, "the input is not mutated");
    assert.deepEqual(base.bindings![2]!.members, ["user:j@example.com"]);
    const again = withBigQueryRoles(policy, MEMBER, ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]);
    assert.equal(again.changed, false);
    assert.equal(again.policy, policy);
  });
});

function fakeAdmin(
  policy: Policy,
  conflicts: number,
  dataset?: DatasetInfo,
): BigQueryAdmin & { writes: Policy[]; created: string[] } {
  let current = structuredClone(policy);
  let left = conflicts;
  const writes: Policy[] = [];
  const created: string[] = [];
  let ds = dataset;
  return {
    writes,
    created,
    getDataset: async () => ds,
    createDataset: async (p, d) => {
      created.push(`${p}:${d}`);
      ds = { access: [] };
      return { created: true };
    },
    getTable: async () => ({ numRows: "7" }),
    getProjectPolicy: async () => structuredClone(current),
    setProjectPolicy: async (_p, next) => {
      writes.push(next);
      if (left-- > 0) {
        // Someone else wrote meanwhile: the etag moves and ours is stale.
        current = { ...current, etag: `${current.etag}x` };
        throw Object.assign(new Error("There were concurrent policy changes."), { status: 409 });
      }
      if (next.etag !== current.etag) throw Object.assign(new Error("stale"), { status: 409 });
      current = { ...structuredClone(next), etag: `${next.etag}!` };
      return current;
    },
  };
}

const clock = (): Clock & { slept: number[] } => {
  const slept: number[] = [];
  return { slept, now: () => 0, sleep: async (ms) => void slept.push(ms) };
};

describe("grantBigQueryAccess", () => {
  test("without grant: the exit-3 error names the roles and the fix, and nothing is written", async () => {
    const admin = fakeAdmin(base, 0);
    const err = await grantBigQueryAccess(admin, { project: "p-dest", dataset: "d", serviceAgent: AGENT }, false).catch(
      (e: unknown) => e,
    );
    assert.ok(err instanceof PermissionError);
    assert.equal(err.exitCode, 3);
    assert.match(err.message, /lacks roles\/bigquery\.dataEditor and roles\/bigquery\.jobUser on project p-dest/);
    assert.match(err.hint ?? "", /--grant-iam/);
    assert.equal(admin.writes.length, 0);
  });

  test("409 ABORTED (concurrent change) is retried by re-reading: the final write carries the fresh etag", async () => {
    const admin = fakeAdmin(base, 2);
    const c = clock();
    const granted = await grantBigQueryAccess(admin, { project: "p", dataset: "d", serviceAgent: AGENT }, true, {
      clock: c,
    });
    assert.deepEqual(granted, ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]);
    assert.equal(admin.writes.length, 3);
    assert.deepEqual(
      admin.writes.map((w) => w.etag),
      ["BwX1", "BwX1x", "BwX1xx"],
    );
    assert.equal(c.slept.length, 2);
  });

  test("a 403 is not retried; already granted writes nothing", async () => {
    const admin = fakeAdmin(base, 0);
    admin.setProjectPolicy = async () => {
      throw new HttpError({ status: 403, method: "POST", url: "u", message: "denied" });
    };
    await assert.rejects(
      grantBigQueryAccess(admin, { project: "p", dataset: "d", serviceAgent: AGENT }, true),
      /denied/,
    );
    const done = fakeAdmin({ bindings: [{ role: "roles/editor", members: [MEMBER] }] }, 0);
    assert.deepEqual(await grantBigQueryAccess(done, { project: "p", dataset: "d", serviceAgent: AGENT }, true), []);
    assert.equal(done.writes.length, 0);
  });
});

describe("exportToBigQuery (the lane's step)", () => {
  function fakeHealthcare(ops: Operation[] = []): HealthcareApi & { starts: unknown[][] } {
    const starts: unknown[][] = [];
    return {
      starts,
      startExport: async (...args) => {
        starts.push(args);
        return `${STORE.replace(/\/dicomStores\/.*/, "")}/operations/1`;
      },
      getOperation: async (name) => ({ name, done: true, response: {}, metadata: { counter: { success: "7" } } }),
      listOperations: async () => ops,
      cancelOperation: async () => {},
    };
  }

  test("creates a missing dataset, grants, starts once with the disposition, waits, reads numRows", async () => {
    const hc = fakeHealthcare();
    const bq = fakeAdmin({ bindings: [] }, 0);
    const started: string[] = [];
    const r = await exportToBigQuery(
      { healthcare: hc, bigquery: bq },
      { store: STORE, table: "bq://p-dest.siim.train", writeDisposition: "WRITE_APPEND" },
      { serviceAgent: AGENT, grantIam: true, onStarted: (n) => void started.push(n), poll: { clock: clock() } },
    );
    assert.deepEqual(bq.created, ["p-dest:siim"]);
    assert.deepEqual(hc.starts, [[STORE, "bq://p-dest.siim.train", { writeDisposition: "WRITE_APPEND" }]]);
    assert.deepEqual(started, [r.operation]);
    assert.equal(r.numRows, 7);
    assert.equal(r.datasetCreated, true);
    assert.deepEqual(r.granted, ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]);
  });

  test("a recorded operation is resumed and an interrupted start is adopted: no second export", async () => {
    const ready = { bindings: [{ role: "roles/owner", members: [MEMBER] }] };
    const hc = fakeHealthcare();
    const r = await exportToBigQuery(
      { healthcare: hc, bigquery: fakeAdmin(ready, 0, { access: [] }) },
      { store: STORE, table: "bq://p-dest.siim.train" },
      {
        serviceAgent: AGENT,
        grantIam: false,
        operation: "projects/p/locations/l/datasets/d/operations/9",
        poll: { clock: clock() },
      },
    );
    assert.equal(r.operation, "projects/p/locations/l/datasets/d/operations/9");
    assert.equal(hc.starts.length, 0);
    const since = "2026-01-01T00:00:00Z";
    const mine: Operation = {
      name: "projects/p/locations/l/datasets/d/operations/5",
      metadata: { apiMethodName: "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData", createTime: since },
    };
    const hc2 = fakeHealthcare([mine]);
    const adopted = await exportToBigQuery(
      { healthcare: hc2, bigquery: fakeAdmin(ready, 0, { access: [] }) },
      { store: STORE, table: "bq://p-dest.siim.train" },
      { serviceAgent: AGENT, grantIam: false, start: { since, known: new Set(), maybeStarted: true }, wait: false },
    );
    assert.equal(adopted.operation, mine.name);
    assert.equal(hc2.starts.length, 0);
  });
});

describe("names, bodies and config", () => {
  test("bq:// URIs and the export body", () => {
    assert.deepEqual(parseTableUri("bq://my-project.siim.train_meta"), {
      ok: true,
      value: { project: "my-project", dataset: "siim", table: "train_meta" },
    });
    assert.deepEqual(parseTableUri("bq://example.com:proj.ds.t").ok && parseTableUri("bq://example.com:proj.ds.t"), {
      ok: true,
      value: { project: "example.com:proj", dataset: "ds", table: "t" },
    });
    for (const bad of ["bq://p.d", "gs://b/p", "bq://My-Project.d.t", "bq://proj.has-dash.t"])
      assert.equal(parseTableUri(bad).ok, false, bad);
    assert.deepEqual(exportBody("bq://p1234.d.t", { writeDisposition: "WRITE_TRUNCATE" }), {
      bigqueryDestination: { tableUri: "bq://p1234.d.t", writeDisposition: "WRITE_TRUNCATE" },
    });
    assert.deepEqual(exportBody("gs://b/p"), { gcsDestination: { uriPrefix: "gs://b/p" } });
  });

  test("config: a bigquery entry per export, every problem with its JSON path", async () => {
    const siim = JSON.parse(await readFile(new URL("../../config/siim.json", import.meta.url), "utf8")) as {
      exports: Record<string, unknown>[];
    };
    const ok = structuredClone(siim);
    ok.exports[0]!["bigquery"] = { table: "bq://my-project.siim.train_metadata" };
    const v = validateConfig(ok);
    assert.deepEqual(v.problems, []);
    assert.deepEqual(v.config?.exports[0]?.bigquery, {
      table: "bq://my-project.siim.train_metadata",
      writeDisposition: "WRITE_TRUNCATE",
    });
    const bad = structuredClone(siim);
    bad.exports[0]!["bigquery"] = { table: "bq://nope", writeDisposition: "WRITE_SOMETIMES", extra: 1 };
    bad.exports[1]!["bigquery"] = { table: "bq://my-project.siim.t" };
    const problems = validateConfig(bad).problems;
    assert.deepEqual(problems.map((p) => p.path).sort(), [
      "exports[0].bigquery",
      "exports[0].bigquery.table",
      "exports[0].bigquery.writeDisposition",
    ]);
    const dup = structuredClone(siim);
    dup.exports[0]!["bigquery"] = { table: "bq://my-project.siim.t" };
    dup.exports[1]!["bigquery"] = { table: "bq://my-project.siim.t" };
    assert.deepEqual(
      validateConfig(dup).problems.map((p) => p.path),
      ["exports[1].bigquery.table"],
    );
    for (const e of dup.exports) (e["bigquery"] as Record<string, string>)["writeDisposition"] = "WRITE_APPEND";
    assert.deepEqual(validateConfig(dup).problems, []);
  });
});

describe("the local cloud's pure BigQuery parts", () => {
  test("COUNT(*) queries: standard, legacy, default project; anything else undefined", () => {
    const t = { projectId: "p-1", datasetId: "d", tableId: "t" };
    assert.deepEqual(parseCountQuery("SELECT COUNT(*) FROM `p-1.d.t`", "x"), t);
    assert.deepEqual(parseCountQuery("select count(*) from p-1.d.t;", "x"), t);
    assert.deepEqual(parseCountQuery("SELECT COUNT(*) FROM [p-1:d.t]", "x"), t);
    assert.deepEqual(parseCountQuery("SELECT COUNT(*) FROM d.t", "p-1"), t);
    for (const q of ["SELECT * FROM d.t", "SELECT COUNT(*) FROM d.t WHERE x", "SELECT COUNT(x) FROM d.t"])
      assert.equal(parseCountQuery(q, "p"), undefined, q);
  });

  test("DICOM DA/TM/DT to BigQuery DATE/TIME/TIMESTAMP; TIMESTAMP's wire form", () => {
    assert.equal(dicomDate("20190601"), "2019-06-01");
    assert.equal(dicomDate("2019"), null);
    assert.equal(dicomTime("1230"), "12:30:00");
    assert.equal(dicomTime("123005.123"), "12:30:05.123");
    assert.equal(dicomTime("25"), null);
    assert.equal(dicomDateTime("20180205235950"), 1_517_875_190_000_000);
    assert.equal(dicomDateTime("20180206005950+0100"), 1_517_875_190_000_000);
    assert.equal(timestampSeconds(1_517_875_190_000_000), "1.51787519E9");
  });

  test("bigqueryDestination: force maps to a disposition only when writeDisposition is unset", () => {
    const d = (x: Record<string, unknown>) => parseBigQueryDestination({ tableUri: "bq://p1234.d.t", ...x }, "v1");
    assert.deepEqual([d({}).disposition, d({}).strictEmpty], ["WRITE_EMPTY", true]);
    assert.equal(d({ force: true }).disposition, "WRITE_TRUNCATE");
    assert.deepEqual(
      [
        d({ force: true, writeDisposition: "WRITE_APPEND" }).disposition,
        d({ writeDisposition: "WRITE_EMPTY" }).strictEmpty,
      ],
      ["WRITE_APPEND", false],
    );
    assert.throws(() => d({ schemaJson: {} }), /Unknown name "schemaJson"/);
    assert.throws(
      () => parseBigQueryDestination({ tableUri: "bq://p1234.d.t", schemaJson: {} }, "v1beta1"),
      /does not implement/,
    );
  });
});
