import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { BigQuery } from "@google-cloud/bigquery";
import { OAuth2Client } from "google-auth-library";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import type { GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { peer } from "../support/peers.ts";

// Real BigQuery clients nobody here wrote, against the local cloud with no real credentials:
// the Google Cloud SDK's bq CLI (it fetches the discovery document from the --api endpoint) and
// @google-cloud/bigquery (apiEndpoint), reading the rows of a DICOM export.

const P = "my-bq-project";
const TRAIN = 15;
const run = promisify(execFile);
let cloud: LocalCloud;
let tmp: string;

async function call(method: string, p: string, body?: unknown) {
  const res = await request(cloud.baseUrl + p, {
    method: method as "GET",
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return (await res.body.json()) as Record<string, unknown> & { name?: string; done?: boolean; bindings?: unknown[] };
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-bq-"));
  cloud = await startLocalCloud({
    dataset: { train: TRAIN, test: 2, instanceBytes: 4096 },
    exportInstancesPerSecond: 5000,
  });
  const policy = await call("POST", `/v1/projects/${P}:getIamPolicy`, {});
  for (const role of ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"])
    policy.bindings!.push({ role, members: [`serviceAccount:${SIIM.serviceAgent}`] });
  await call("POST", `/v1/projects/${P}:setIamPolicy`, { policy });
  await call("POST", `/bigquery/v2/projects/${P}/datasets`, { datasetReference: { datasetId: "siim" } });
  const op = await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, {
    bigqueryDestination: { tableUri: `bq://${P}.siim.train`, writeDisposition: "WRITE_TRUNCATE" },
  });
  for (let done = false; !done; await new Promise((r) => setTimeout(r, 20)))
    done = (await call("GET", `/v1/${op.name}`)).done === true;
});
after(async () => {
  await cloud.close();
  await rm(tmp, { recursive: true, force: true });
});

/** The table's expected rows (the export writes them in store order). */
function instances() {
  return cloud.healthcare.instances(SIIM_TRAIN_STORE) as readonly GeneratedInstance[];
}

describe("the bq CLI of the Google Cloud SDK", () => {
  const bq = peer("bq");
  /** Runs bq with a fresh config, a dummy token (never refreshed) and the local cloud as --api. */
  async function bqRun(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const r = await run(
        bq.path!,
        [`--api=${cloud.baseUrl}`, "--use_google_auth", "--oauth_access_token=dummy", `--project_id=${P}`, ...args],
        {
          env: {
            ...process.env,
            CLOUDSDK_CONFIG: path.join(tmp, "gcloud"),
            BIGQUERYRC: path.join(tmp, "bigqueryrc"),
            CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
          },
          timeout: 120_000,
        },
      );
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === "number" ? e.code : -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
    }
  }

  test("bq show: the table's schema and row count", { skip: bq.skip }, async () => {
    const before = cloud.requests.entries.length;
    const r = await bqRun("--format=json", "show", "siim.train");
    assert.equal(r.code, 0, r.stderr + r.stdout);
    const t = JSON.parse(r.stdout);
    assert.equal(t.numRows, String(TRAIN));
    assert.equal(t.id, `${P}:siim.train`);
    const names = t.schema.fields.map((f: { name: string }) => f.name);
    for (const n of ["SOPInstanceUID", "StudyInstanceUID", "PatientName", "PixelSpacing", "Rows"])
      assert.ok(names.includes(n), n);
    const seen = cloud.requests.entries.slice(before).map((e) => `${e.method} ${e.path}?${e.query}`);
    assert.ok(
      seen.includes("GET /$discovery/rest?version=v2"),
      `bq fetched the discovery document: ${seen.join(", ")}`,
    );
    assert.ok(seen.includes(`GET /bigquery/v2/projects/${P}/datasets/siim/tables/train?alt=json`), seen.join(", "));
  });

  test(
    "bq head: rows decoded from the {f:[{v}]} encoding, nested and repeated fields included",
    { skip: bq.skip },
    async () => {
      const r = await bqRun(
        "--format=json",
        "head",
        "-n",
        "3",
        "--selected_fields=SOPInstanceUID,PatientName,PixelSpacing,Rows",
        "siim.train",
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      const expected = instances()
        .slice(0, 3)
        .map((i) => ({
          SOPInstanceUID: i.sopInstanceUid,
          PatientName: { Alphabetic: i.patientId, Ideographic: null, Phonetic: null },
          Rows: String(i.side),
          PixelSpacing: ["0.168", "0.168"],
        }));
      assert.deepEqual(JSON.parse(r.stdout), expected);
    },
  );

  test("bq ls: the project's datasets and the dataset's tables", { skip: bq.skip }, async () => {
    const ds = await bqRun("ls");
    assert.equal(ds.code, 0, ds.stderr);
    assert.equal(ds.stdout, "  datasetId  \n ----------- \n  siim       \n");
    const tables = await bqRun("ls", "siim");
    assert.equal(tables.code, 0, tables.stderr);
    assert.match(tables.stdout, /^\s+tableId\s+Type\s+Labels.*\n[- ]+\n\s+train\s+TABLE\s*\n$/);
  });

  test("bq query 'SELECT COUNT(*)…' (standard and legacy SQL) prints the row count", { skip: bq.skip }, async () => {
    const std = await bqRun("--format=csv", "query", "--nouse_legacy_sql", `SELECT COUNT(*) FROM \`${P}.siim.train\``);
    assert.equal(std.code, 0, std.stderr + std.stdout);
    assert.equal(std.stdout, `f0_\n${TRAIN}\n`);
    const legacy = await bqRun("--format=csv", "query", `SELECT COUNT(*) FROM [${P}:siim.train]`);
    assert.equal(legacy.code, 0, legacy.stderr + legacy.stdout);
    assert.equal(legacy.stdout, `f0_\n${TRAIN}\n`);
  });

  test(
    "bq mk --dataset and bq rm -r -f -d: datasets insert and delete with deleteContents",
    { skip: bq.skip },
    async () => {
      const mk = await bqRun("mk", "--dataset", "--description=made by bq", `${P}:made_by_bq`);
      assert.equal(mk.code, 0, mk.stderr + mk.stdout);
      assert.equal(mk.stdout, `Dataset '${P}:made_by_bq' successfully created.\n`);
      const d = await call("GET", `/bigquery/v2/projects/${P}/datasets/made_by_bq`);
      assert.equal(d["description"], "made by bq");
      await call("POST", `/bigquery/v2/projects/${P}/datasets/made_by_bq/tables`, {
        tableReference: { tableId: "t" },
        schema: { fields: [{ name: "x", type: "STRING" }] },
      });
      const rmds = await bqRun("rm", "-r", "-f", "-d", `${P}:made_by_bq`);
      assert.equal(rmds.code, 0, rmds.stderr + rmds.stdout);
      assert.equal((await call("GET", `/bigquery/v2/projects/${P}/datasets/made_by_bq`))["error"] !== undefined, true);
    },
  );

  test("bq on a missing table or an unsupported query fails with the server's message", { skip: bq.skip }, async () => {
    const missing = await bqRun("show", "siim.nope");
    assert.notEqual(missing.code, 0);
    assert.match((missing.stdout + missing.stderr).replace(/\s+/g, " "), /Not found: Table my-bq-project:siim\.nope/);
    const other = await bqRun("query", "--nouse_legacy_sql", `SELECT SOPInstanceUID FROM \`${P}.siim.train\``);
    assert.notEqual(other.code, 0);
    assert.match((other.stdout + other.stderr).replace(/\s+/g, " "), /answers only SELECT COUNT\(\*\) FROM/);
  });
});

describe("gcloud healthcare dicom-stores export bq", () => {
  const gcloud = peer("gcloud");
  test(
    "waits for the operation and exits 0; the flags became bigqueryDestination; the table is filled",
    { skip: gcloud.skip },
    async () => {
      const r = await run(
        gcloud.path!,
        [
          "healthcare",
          "dicom-stores",
          "export",
          "bq",
          SIIM.trainStore,
          `--dataset=${SIIM.dataset}`,
          `--location=${SIIM.location}`,
          `--bq-table=bq://${P}.siim.from_gcloud`,
          "--write-disposition=write-truncate",
        ],
        {
          env: {
            ...process.env,
            CLOUDSDK_CONFIG: path.join(tmp, "gcloud-hc"),
            CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE: `${cloud.baseUrl}/`,
            CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
            CLOUDSDK_CORE_PROJECT: SIIM.project,
            CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
          },
          timeout: 240_000,
        },
      );
      const m = /Waiting for operation \[(projects\/[^\]]+\/operations\/\d+)\] to complete/.exec(r.stderr);
      assert.ok(m, r.stderr);
      const op = cloud.healthcare.operation(m[1]!);
      assert.equal(op?.destination, `bq://${P}.siim.from_gcloud`);
      assert.equal(op?.done, true);
      assert.equal(op?.error, undefined);
      const t = await call("GET", `/bigquery/v2/projects/${P}/datasets/siim/tables/from_gcloud`);
      assert.equal(t["numRows"], String(TRAIN));
    },
  );
});

describe("@google-cloud/bigquery", () => {
  function client(): BigQuery {
    // A preset token that never refreshes: no ADC lookup, nothing leaves loopback.
    const auth = new OAuth2Client();
    auth.setCredentials({ access_token: "dummy", expiry_date: Date.now() + 3_600_000 });
    return new BigQuery({ projectId: P, apiEndpoint: cloud.baseUrl, authClient: auth as never });
  }

  test("getRows reads one row per instance with its tags; getMetadata has numRows; query counts", async () => {
    const table = client().dataset("siim").table("train");
    const [rows] = await table.getRows();
    assert.equal(rows.length, TRAIN);
    const bySop = new Map(rows.map((r) => [r["SOPInstanceUID"] as string, r]));
    for (const i of instances()) {
      const r = bySop.get(i.sopInstanceUid);
      assert.ok(r !== undefined, i.sopInstanceUid);
      assert.equal(r["StudyInstanceUID"], i.studyUid);
      assert.equal(r["SeriesInstanceUID"], i.seriesUid);
      assert.equal(r["PatientID"], i.patientId);
      assert.deepEqual(r["PatientName"], { Alphabetic: i.patientId, Ideographic: null, Phonetic: null });
      assert.equal(r["Rows"], i.side);
      assert.deepEqual(r["PixelSpacing"], ["0.168", "0.168"]);
      assert.equal(r["ViewPosition"], i.viewPosition);
      assert.equal((r["StudyDate"] as { value: string }).value, "1901-01-01");
    }
    const [meta] = await table.getMetadata();
    assert.equal(meta.numRows, String(TRAIN));
    const [count] = await client().query({ query: `SELECT COUNT(*) FROM \`${P}.siim.train\`` });
    assert.deepEqual(count, [{ f0_: TRAIN }]);
  });

  test("paging: pages of 4 rows with pageToken, every row exactly once", async () => {
    const table = client().dataset("siim").table("train");
    const seen: string[] = [];
    let query: Record<string, unknown> | null | undefined = { maxResults: 4, autoPaginate: false };
    let pages = 0;
    while (query) {
      const [rows, next] = (await table.getRows(query as never)) as unknown as [
        Record<string, unknown>[],
        Record<string, unknown> | null,
      ];
      assert.ok(rows.length <= 4);
      seen.push(...rows.map((r) => r["SOPInstanceUID"] as string));
      query = next;
      pages++;
    }
    assert.equal(pages, Math.ceil(TRAIN / 4));
    assert.deepEqual(
      seen,
      instances().map((i) => i.sopInstanceUid),
    );
  });
});
