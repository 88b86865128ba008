import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { request } from "undici";
import { runCli } from "../../src/cli/run-cli.ts";
import { credentialedEndpointEnv, startFakeAdc } from "../support/fake-adc.ts";
import {
  SIIM,
  SIIM_DATASET_PATH,
  SIIM_FHIR_STORE,
  SIIM_TEST_STORE,
  SIIM_TRAIN_STORE,
} from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";

const MAIN = path.resolve("src/cli/main.ts");
const BUCKET = "doctor-bucket";
let cloud: LocalCloud;
let dir: string;

before(async () => {
  cloud = await startLocalCloud({ dataset: { train: 3, test: 1, instanceBytes: 1024 } });
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-doctor-"));
});
after(async () => {
  await cloud.close();
  await rm(dir, { recursive: true, force: true });
});

/** config/demo.json pointed at BUCKET, without grantIam, state under the temp dir. */
async function writeConfig(name: string, patch: Record<string, unknown> = {}): Promise<string> {
  const demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown>;
  const file = path.join(dir, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      ...demo,
      bucket: { name: BUCKET, location: "us-central1" },
      grantIam: false,
      stateDir: `./${name}-state`,
      ...patch,
    }),
  );
  return file;
}

async function hcexport(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  let err = "";
  stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  const code = await runCli(argv, { stdout, stderr, env: {}, cwd: dir, signal: new AbortController().signal });
  return { code, stdout: out, stderr: err };
}

async function post(p: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${cloud.baseUrl}${p}`, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

describe("emulator: {store}:testIamPermissions", () => {
  test("answers the valid healthcare permissions asked, in the real wire format", async () => {
    const asked = [
      "healthcare.dicomStores.export",
      "healthcare.dicomStores.dicomWebRead",
      "storage.objects.get",
      "healthcare.dicomStores.export",
      "not a permission",
    ];
    const r = await post(`/v1/${SIIM_TRAIN_STORE}:testIamPermissions`, { permissions: asked });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { permissions: ["healthcare.dicomStores.export", "healthcare.dicomStores.dicomWebRead"] });
    assert.deepEqual(
      (await post(`/v1beta1/${SIIM_FHIR_STORE}:testIamPermissions`, { permissions: ["healthcare.fhirResources.get"] }))
        .json,
      { permissions: ["healthcare.fhirResources.get"] },
    );
    assert.deepEqual(
      (await post(`/v1/${SIIM_DATASET_PATH}:testIamPermissions`, { permissions: ["healthcare.operations.get"] })).json,
      { permissions: ["healthcare.operations.get"] },
    );
  });

  test("a store that does not exist: an empty set, not NOT_FOUND (as documented); nothing asked: {}", async () => {
    const r = await post(`/v1/${SIIM_DATASET_PATH}/dicomStores/nope:testIamPermissions`, {
      permissions: ["healthcare.dicomStores.export"],
    });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, {});
    assert.deepEqual((await post(`/v1/${SIIM_TRAIN_STORE}:testIamPermissions`, {})).json, {});
  });

  test("unknown fields, wildcards and non-lists are 400 INVALID_ARGUMENT", async () => {
    const unknown = await post(`/v1/${SIIM_TRAIN_STORE}:testIamPermissions`, { permissions: [], updateMask: "x" });
    assert.equal(unknown.status, 400);
    const e = unknown.json["error"] as {
      status: string;
      message: string;
      details: Array<{ fieldViolations: Array<{ field: string }> }>;
    };
    assert.equal(e.status, "INVALID_ARGUMENT");
    assert.match(e.message, /Unknown name "updateMask"/);
    assert.equal(e.details[0]!.fieldViolations[0]!.field, "updateMask");
    const wildcard = await post(`/v1/${SIIM_TRAIN_STORE}:testIamPermissions`, { permissions: ["healthcare.*"] });
    assert.equal(wildcard.status, 400);
    assert.match((wildcard.json["error"] as { message: string }).message, /wildcards/);
    assert.equal(
      (await post(`/v1/${SIIM_TRAIN_STORE}:testIamPermissions`, { permissions: "healthcare.dicomStores.get" })).status,
      400,
    );
  });
});

describe("hcexport doctor against the local cloud", () => {
  test("before the grant: exit 3 naming the missing binding; makes only GETs and testIamPermissions POSTs; after 'iam grant': exit 0", async () => {
    await cloud.store.createBucket({
      name: BUCKET,
      projectNumber: cloud.projects.ensure("my-demo-project").projectNumber,
    });
    const policyBefore = JSON.stringify(cloud.store.getPolicy(BUCKET));
    const opsBefore = cloud.healthcare.operations().length;
    const cfg = await writeConfig("a");
    cloud.requests.clear();
    const r = await hcexport(["doctor", cfg, "--emulator", cloud.baseUrl]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      r.stdout,
      /✖ fail\s+service agent binding on gs:\/\/doctor-bucket\s+gs:\/\/doctor-bucket: service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com lacks roles\/storage\.objectAdmin/,
    );
    assert.match(
      r.stdout,
      /fix: run 'hcexport iam grant gs:\/\/doctor-bucket --service-agent service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com' or pass --grant-iam/,
    );
    assert.match(r.stdout, /✔ ok\s+credentials\s+anonymous \(local cloud\)/);
    assert.match(r.stdout, /✔ ok\s+DICOM store siim-pneumothorax\/dicom-images-train\s+all 3 granted/);
    assert.match(
      r.stdout,
      /✔ ok\s+FHIR store siim-pneumothorax\/fhir-masks-train\s+granted: healthcare\.fhirResources\.get/,
    );
    assert.match(
      r.stderr,
      /error: doctor: 1 check failed: service agent binding on gs:\/\/doctor-bucket\n\s+service agent binding on gs:\/\/doctor-bucket: .*lacks roles\/storage\.objectAdmin/,
    );
    assert.match(r.stderr, /fix: run 'hcexport iam grant gs:\/\/doctor-bucket/);

    // Changes nothing: only reads and permission tests reached the emulator.
    const entries = cloud.requests.entries.filter((e) => e.kind !== "admin");
    assert.ok(entries.length >= 10, `${entries.length} requests`);
    const writes = entries.filter(
      (e) => e.method !== "GET" && !(e.method === "POST" && e.path.endsWith(":testIamPermissions")),
    );
    assert.deepEqual(
      writes.map((e) => `${e.method} ${e.path}`),
      [],
    );
    assert.equal(
      entries.filter((e) => e.path.endsWith(":testIamPermissions")).length,
      3,
      "two DICOM stores and the FHIR store",
    );
    assert.equal(cloud.requests.count("GET iam"), 2, "bucket testPermissions + the policy read");
    assert.equal(JSON.stringify(cloud.store.getPolicy(BUCKET)), policyBefore);
    assert.equal(cloud.healthcare.operations().length, opsBefore);

    const grant = await hcexport([
      "iam",
      "grant",
      `gs://${BUCKET}`,
      "--service-agent",
      SIIM.serviceAgent,
      "--emulator",
      cloud.baseUrl,
    ]);
    assert.equal(grant.code, 0, grant.stderr);
    const ok = await hcexport(["doctor", "--config", cfg, "--emulator", cloud.baseUrl]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      /✔ ok\s+service agent binding on gs:\/\/doctor-bucket\s+service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com holds roles\/storage\.objectAdmin/,
    );
    assert.match(ok.stdout, /\nall is well: 10 checks ok\n$/);
    assert.equal(ok.stderr, "");

    // --json: NDJSON only — a doctor.check event per check, then the result.
    const json = await hcexport(["doctor", cfg, "--emulator", cloud.baseUrl, "--json"]);
    assert.equal(json.code, 0);
    const lines = json.stdout
      .trim()
      .split("\n")
      .map(
        (l) =>
          JSON.parse(l) as {
            kind: string;
            ok?: boolean;
            exitCode?: number;
            checks?: Array<{ id: string; status: string }>;
          },
      );
    assert.equal(lines.filter((l) => l.kind === "doctor.check").length, 10);
    const result = lines.at(-1)!;
    assert.equal(result.kind, "result");
    assert.equal(result.ok, true);
    assert.equal(result.exitCode, 0);
    assert.deepEqual(new Set(result.checks!.map((c) => c.status)), new Set(["ok"]));
  });

  test("an unreachable endpoint: exit 1, dependent checks skipped, the Healthcare checks still run", async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const cfg = await writeConfig("b");
    const r = await hcexport([
      "doctor",
      cfg,
      "--emulator",
      cloud.baseUrl,
      "--storage-endpoint",
      `http://127.0.0.1:${deadPort}`,
      "--json",
    ]);
    assert.equal(r.code, 1);
    const result = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; checks?: Array<{ id: string; status: string; detail: string }> })
      .find((l) => l.kind === "result")!;
    const status = Object.fromEntries(result.checks!.map((c) => [c.id, c.status]));
    assert.equal(status["endpoint.storage"], "fail");
    assert.equal(status["bucket"], "skip");
    assert.equal(status["service-agent"], "skip");
    assert.equal(status[`store:${SIIM_TRAIN_STORE}`], "ok");
    assert.equal(status[`store:${SIIM_TEST_STORE}`], "ok");
    assert.match(result.checks!.find((c) => c.id === "endpoint.storage")!.detail, /ECONNREFUSED/);
  });

  test("with Application Default Credentials: names the credential kind, the token never appears in any output", async () => {
    const TOKEN = "ya29.FAKE-DOCTOR-TOKEN-must-never-be-printed-41b7";
    const adc = await startFakeAdc(TOKEN, dir);
    try {
      const creds = adc.file;
      const cfg = await writeConfig("c", { grantIam: true, serviceAgent: SIIM.serviceAgent });
      // 0.0.0.0 reaches the loopback server; as plain endpoints (not --emulator) they get credentials.
      const env = {
        ...process.env,
        GOOGLE_APPLICATION_CREDENTIALS: creds,
        ...credentialedEndpointEnv(cloud.baseUrl.replace("127.0.0.1", "0.0.0.0")),
      };
      // One spawn (google-auth-library needs the real process env); --verbose shows the most.
      for (const extra of [["--verbose"]]) {
        const r = await new Promise<{ code: number; out: string }>((resolve) => {
          execFile(
            process.execPath,
            [MAIN, "doctor", cfg, ...extra],
            { cwd: dir, env, timeout: 30_000 },
            (err, stdout, stderr) =>
              resolve({ code: (err as { code?: number } | null)?.code ?? 0, out: `${stdout}\n${stderr}` }),
          );
        });
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /workload identity federation; an access token was obtained/);
        assert.ok(
          !r.out.includes(TOKEN) && !r.out.includes("FAKE-DOCTOR-TOKEN"),
          `token leaked with ${extra.join(" ")}`,
        );
        assert.ok(
          !r.out.includes("rtoken") && !r.out.includes("csecret"),
          `credential file secrets leaked with ${extra.join(" ")}`,
        );
      }
      assert.ok(adc.tokenRequests() > 0, "a token was really minted");
    } finally {
      await adc.close();
    }
  });
});
