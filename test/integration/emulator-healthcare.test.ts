import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import type { GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import {
  SIIM,
  SIIM_DATASET_PATH,
  SIIM_FHIR_STORE,
  SIIM_TEST_STORE,
  SIIM_TRAIN_STORE,
} from "../../src/emulator/dataset/siim.ts";
import { noFaults } from "../../src/emulator/types.ts";

let cloud: LocalCloud;
const AGENT = `serviceAccount:${SIIM.serviceAgent}`;

async function call(method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(cloud.baseUrl + p, {
    method: method as "GET",
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const buf = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, buf, json: () => JSON.parse(buf.toString("utf8")) };
}

async function waitDone(name: string, version = "v1"): Promise<Record<string, unknown>> {
  for (let i = 0; i < 500; i++) {
    const op = (await call("GET", `/${version}/${name}`)).json();
    if (op.done === true) return op;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`operation ${name} did not finish`);
}

async function grant(bucket: string, role: string): Promise<void> {
  const p = (await call("GET", `/storage/v1/b/${bucket}/iam`)).json();
  p.bindings.push({ role, members: [AGENT] });
  assert.equal((await call("PUT", `/storage/v1/b/${bucket}/iam`, p)).status, 200);
}

before(async () => {
  cloud = await startLocalCloud({
    dataset: { train: 30, test: 7, instanceBytes: 4096 },
    exportInstancesPerSecond: 2000,
  });
});
after(() => cloud.close());

describe("DICOM export", () => {
  test("without the service agent's binding: done with PERMISSION_DENIED and nothing written", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "no-iam-bucket" });
    const start = await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, {
      gcsDestination: { uriPrefix: "gs://no-iam-bucket/train" },
    });
    assert.equal(start.status, 200);
    const name = start.json().name as string;
    assert.match(name, new RegExp(`^${SIIM_DATASET_PATH}/operations/\\d+$`));
    const op = await waitDone(name);
    assert.deepEqual(op.error, {
      code: 7,
      message:
        "Healthcare API doesn't have required Cloud Storage permission. See https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products for more information",
    });
    assert.equal(op.response, undefined);
    assert.equal(cloud.store.objectCount("no-iam-bucket"), 0);
  });

  test("objectCreator is not enough", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "creator-bucket" });
    await grant("creator-bucket", "roles/storage.objectCreator");
    const op = await waitDone(
      (
        await call("POST", `/v1/${SIIM_TEST_STORE}:export`, {
          gcsDestination: { uriPrefix: "gs://creator-bucket/test" },
        })
      ).json().name,
    );
    assert.equal((op.error as { code: number }).code, 7);
  });

  test("with objectAdmin: one object per instance, byte-identical, counters as strings", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "good-bucket" });
    await grant("good-bucket", "roles/storage.objectAdmin");
    const name = (
      await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/train/" } })
    ).json().name;
    const running = (await call("GET", `/v1/${name}`)).json();
    assert.equal("done" in running, false, "a running operation has no done field (proto3 JSON omits false)");
    assert.equal(running.metadata.counter.pending, "30", "int64 counters are JSON strings");
    assert.equal(running.metadata["@type"], "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata");
    assert.equal(running.metadata.apiMethodName, "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData");
    const op = await waitDone(name);
    assert.deepEqual(op.response, {
      "@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse",
    });
    const meta = op.metadata as { counter: Record<string, string>; endTime: string; logsUrl: string };
    assert.deepEqual(meta.counter, { success: "30" });
    assert.ok(meta.endTime && meta.logsUrl.startsWith("https://console.cloud.google.com/"));
    const instances = cloud.healthcare.instances(SIIM_TRAIN_STORE);
    assert.equal(cloud.store.objectCount("good-bucket"), instances.length);
    for (const inst of instances) {
      const obj = `train/${inst.studyUid}/${inst.seriesUid}/${inst.sopInstanceUid}.dcm`;
      assert.deepEqual(cloud.store.readObject("good-bucket", obj), inst.data(), obj);
    }
    // A re-export overwrites: same names and bytes, new generations.
    const before = cloud.store.listObjects("good-bucket", { limit: 1 })[0]!;
    await waitDone(
      (
        await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, {
          gcsDestination: { uriPrefix: "gs://good-bucket/train" },
        })
      ).json().name,
    );
    const afterMeta = cloud.store.getObject("good-bucket", before.name)!;
    assert.notEqual(afterMeta.generation, before.generation);
    assert.equal(afterMeta.crc32c, before.crc32c);
    assert.equal(cloud.store.objectCount("good-bucket"), instances.length);
  });

  test("v1beta1 works with v1beta1 types; unknown fields are 400 INVALID_ARGUMENT; missing store 404", async () => {
    const name = (
      await call("POST", `/v1beta1/${SIIM_TEST_STORE}:export`, {
        gcsDestination: { uriPrefix: "gs://good-bucket/test" },
      })
    ).json().name;
    const op = await waitDone(name, "v1beta1");
    assert.match(
      String((op.metadata as { apiMethodName: string }).apiMethodName),
      /^google\.cloud\.healthcare\.v1beta1\./,
    );
    const bad = await call("POST", `/v1/${SIIM_TEST_STORE}:export`, {
      gcsDestination: { uriPrefix: "gs://good-bucket/x" },
      outputConfig: {},
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.status, "INVALID_ARGUMENT");
    assert.match(bad.json().error.message, /Unknown name "outputConfig": Cannot find field\./);
    assert.equal(
      (
        await call("POST", `/v1/${SIIM_DATASET_PATH}/dicomStores/nope:export`, {
          gcsDestination: { uriPrefix: "gs://good-bucket/x" },
        })
      ).status,
      404,
    );
  });

  test("failures part-way end the operation with an error and counter.failure > 0", async () => {
    cloud.faults = { ...noFaults, exportFailureRate: 0.3, seed: 5 };
    try {
      const op = await waitDone(
        (
          await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, {
            gcsDestination: { uriPrefix: "gs://good-bucket/partial" },
          })
        ).json().name,
      );
      const counter = (op.metadata as { counter: Record<string, string> }).counter;
      assert.ok(Number(counter["failure"]) > 0 && Number(counter["success"]) > 0, JSON.stringify(counter));
      assert.equal((op.error as { code: number }).code, 13);
    } finally {
      cloud.faults = { ...noFaults };
    }
  });

  test("cancel ends the operation with code 1; operations.list lists them all", async () => {
    const slow = await startLocalCloud({
      dataset: { train: 50, test: 1, instanceBytes: 512 },
      exportInstancesPerSecond: 20,
    });
    try {
      slow.store.createBucket({ name: "slow-bucket", projectNumber: "1" });
      slow.store.setPolicy("slow-bucket", {
        version: 1,
        bindings: [{ role: "roles/storage.objectAdmin", members: [AGENT] }],
      });
      const start = await request(`${slow.baseUrl}/v1/${SIIM_TRAIN_STORE}:export`, {
        method: "POST",
        body: JSON.stringify({ gcsDestination: { uriPrefix: "gs://slow-bucket/t" } }),
      });
      const name = ((await start.body.json()) as { name: string }).name;
      await new Promise((r) => setTimeout(r, 150));
      const c = await request(`${slow.baseUrl}/v1/${name}:cancel`, { method: "POST", body: "{}" });
      assert.deepEqual(await c.body.json(), {});
      let op: { done?: boolean; error?: { code: number } } = {};
      for (let i = 0; i < 100 && op.done !== true; i++) {
        op = (await (await request(`${slow.baseUrl}/v1/${name}`)).body.json()) as typeof op;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(op.error?.code, 1);
      assert.ok(slow.store.objectCount("slow-bucket") < 50);
    } finally {
      await slow.close();
    }
    const list = (await call("GET", `/v1/${SIIM_DATASET_PATH}/operations`)).json();
    assert.equal(list.operations.length, cloud.healthcare.operations().length);
  });
});

describe("DICOMweb", () => {
  const web = `/v1/${SIIM_TRAIN_STORE}/dicomWeb`;
  test("QIDO paging with limit/offset covers every instance once; 204 when nothing matches", async () => {
    const seen: string[] = [];
    for (let offset = 0; ; offset += 8) {
      const r = await call(
        "GET",
        `${web}/instances?limit=8&offset=${offset}&includefield=0020000D&includefield=0020000E`,
      );
      if (r.status === 204) break;
      assert.equal(r.headers["content-type"], "application/dicom+json; charset=utf-8");
      const rows = r.json() as Array<Record<string, { Value: string[] }>>;
      seen.push(...rows.map((x) => x["00080018"]!.Value[0]!));
      if (rows.length < 8) break;
    }
    assert.deepEqual(
      seen.sort(),
      cloud.healthcare
        .instances(SIIM_TRAIN_STORE)
        .map((i) => i.sopInstanceUid)
        .sort(),
    );
    assert.equal((await call("GET", `${web}/studies?StudyInstanceUID=1.2.3.4`)).status, 204);
  });
  test("WADO-RS: single instance byte-identical; study as multipart/related", async () => {
    const inst = cloud.healthcare.instances(SIIM_TRAIN_STORE)[3]!;
    const one = await call(
      "GET",
      `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances/${inst.sopInstanceUid}`,
      undefined,
      { accept: "application/dicom; transfer-syntax=*" },
    );
    assert.equal(one.status, 200);
    assert.match(String(one.headers["content-type"]), /^application\/dicom/);
    assert.deepEqual(one.buf, inst.data());
    const study = await call("GET", `${web}/studies/${inst.studyUid}`, undefined, {
      accept: 'multipart/related; type="application/dicom"; transfer-syntax=*',
    });
    const boundary = /boundary=([^;]+)/.exec(String(study.headers["content-type"]))![1]!;
    const text = study.buf.toString("latin1");
    const start = text.indexOf("\r\n\r\n") + 4;
    const end = text.indexOf(`\r\n--${boundary}--`);
    assert.deepEqual(study.buf.subarray(start, end), inst.data());
    assert.equal(
      (
        await call(
          "GET",
          `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances/${inst.sopInstanceUid}`,
          undefined,
          { accept: "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90" },
        )
      ).status,
      406,
    );
    assert.equal(
      (await call("GET", `${web}/studies/1.2.3/series/4.5/instances/6.7`, undefined, { accept: "application/dicom" }))
        .status,
      404,
    );
  });
  test("unimplemented DICOMweb methods are 501", async () => {
    const r = await call("GET", `${web}/studies/1.2.3/rendered`);
    assert.equal(r.status, 501);
    assert.match(r.json().error.message, /does not implement GET .*\/rendered/);
  });
});

describe("FHIR and Resource Manager", () => {
  test("the DocumentReference points at the annotations CSV", async () => {
    const r = await call("GET", `/v1/${SIIM_FHIR_STORE}/fhir/DocumentReference/${SIIM.documentReference}`);
    assert.equal(r.status, 200);
    assert.match(String(r.headers["content-type"]), /^application\/fhir\+json/);
    const doc = r.json();
    assert.equal(doc.resourceType, "DocumentReference");
    const att = doc.content[0].attachment;
    assert.equal(att.contentType, "text/csv");
    const csv = await request(att.url);
    assert.equal(await csv.body.text(), cloud.annotationsCsv);
    assert.equal(cloud.annotationsCsv.split("\n")[0], "ImageId, EncodedPixels");
    const missing = await call("GET", `/v1/${SIIM_FHIR_STORE}/fhir/DocumentReference/nope`);
    assert.equal(missing.status, 404);
    assert.equal(missing.json().resourceType, "OperationOutcome");
  });
  test("project number lookup (v1 and v3)", async () => {
    const v1 = (await call("GET", `/v1/projects/${SIIM.project}`)).json();
    assert.equal(v1.projectNumber, SIIM.projectNumber);
    const v3 = (await call("GET", `/v3/projects/${SIIM.project}`)).json();
    assert.equal(v3.name, `projects/${SIIM.projectNumber}`);
    cloud.projects.hide("secret-project");
    assert.equal((await call("GET", "/v1/projects/secret-project")).status, 403);
  });
});

describe("export pacing, failures mid-way and persistence", () => {
  const policy = { version: 1, bindings: [{ role: "roles/storage.objectAdmin", members: [AGENT] }] };
  const get = async (c: LocalCloud, p: string) =>
    (await (await request(c.baseUrl + p)).body.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  const post = async (c: LocalCloud, p: string, body: unknown) =>
    (await (await request(c.baseUrl + p, { method: "POST", body: JSON.stringify(body) })).body.json()) as {
      name: string;
    };
  const until = async (c: LocalCloud, name: string) => {
    for (let i = 0; i < 400; i++) {
      const op = await get(c, `/v1/${name}`);
      if (op["done"] === true) return op;
      await new Promise((r) => setTimeout(r, 15));
    }
    throw new Error(`${name} did not finish`);
  };

  test("an export writes at the configured rate and reports progress as it goes", async () => {
    const c = await startLocalCloud({
      dataset: { train: 30, test: 1, instanceBytes: 512 },
      exportInstancesPerSecond: 50,
    });
    try {
      c.store.createBucket({ name: "paced", projectNumber: "1" });
      c.store.setPolicy("paced", policy);
      const t0 = performance.now();
      const { name } = await post(c, `/v1/${SIIM_TRAIN_STORE}:export`, {
        gcsDestination: { uriPrefix: "gs://paced/t" },
      });
      let mid = await get(c, `/v1/${name}`);
      while (mid["metadata"].counter.success === undefined) {
        await new Promise((r) => setTimeout(r, 10));
        mid = await get(c, `/v1/${name}`);
      }
      const success = Number(mid["metadata"].counter.success);
      assert.ok(success > 0 && success < 30, JSON.stringify(mid["metadata"].counter));
      assert.equal(mid["metadata"].counter.pending, String(30 - success));
      const op = await until(c, name);
      const ms = performance.now() - t0;
      assert.ok(ms > 500 && ms < 3000, `30 instances at 50/s took ${ms} ms`);
      assert.deepEqual(op["metadata"].counter, { success: "30" });
    } finally {
      await c.close();
    }
  });

  test("revoking the role mid-export fails the rest with PERMISSION_DENIED; a missing bucket fails with NOT_FOUND", async () => {
    const c = await startLocalCloud({
      dataset: { train: 40, test: 2, instanceBytes: 512 },
      exportInstancesPerSecond: 30,
    });
    try {
      c.store.createBucket({ name: "revoked", projectNumber: "1" });
      c.store.setPolicy("revoked", policy);
      const { name } = await post(c, `/v1/${SIIM_TRAIN_STORE}:export`, {
        gcsDestination: { uriPrefix: "gs://revoked/t" },
      });
      while (Number((await get(c, `/v1/${name}`))["metadata"].counter.success ?? "0") < 3)
        await new Promise((r) => setTimeout(r, 10));
      c.store.setPolicy("revoked", {
        version: 1,
        bindings: [{ role: "roles/storage.objectCreator", members: [AGENT] }],
      });
      const op = await until(c, name);
      assert.equal(op["error"].code, 7);
      const counter = op["metadata"].counter as Record<string, string>;
      assert.equal(Number(counter["success"]) + Number(counter["failure"]), 40, JSON.stringify(counter));
      assert.ok(Number(counter["failure"]) > 0 && Number(counter["success"]) > 0);
      assert.equal(c.store.objectCount("revoked"), Number(counter["success"]));
      const missing = await until(
        c,
        (await post(c, `/v1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://no-such-bucket/t" } }))
          .name,
      );
      assert.equal(missing["error"].code, 5);
      assert.deepEqual(missing["metadata"].counter, { failure: "2" });
    } finally {
      await c.close();
    }
  });

  test("with a data directory, operations survive a restart and an unfinished export resumes", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-hc-"));
    try {
      const first = await startLocalCloud({
        dataDir: dir,
        dataset: { train: 40, test: 1, instanceBytes: 512 },
        exportInstancesPerSecond: 40,
      });
      first.store.createBucket({ name: "kept", projectNumber: "1" });
      first.store.setPolicy("kept", policy);
      const quick = await until(
        first,
        (await post(first, `/v1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://kept/test" } })).name,
      );
      const { name } = await post(first, `/v1/${SIIM_TRAIN_STORE}:export`, {
        gcsDestination: { uriPrefix: "gs://kept/train" },
      });
      await new Promise((r) => setTimeout(r, 250));
      await first.close();
      const second = await startLocalCloud({
        dataDir: dir,
        dataset: { train: 40, test: 1, instanceBytes: 512 },
        exportInstancesPerSecond: 400,
      });
      try {
        assert.deepEqual(await get(second, `/v1/${quick["name"]}`), quick);
        const op = await until(second, name);
        assert.deepEqual(op["metadata"].counter, { success: "40" });
        assert.equal(second.store.objectCount("kept"), 41);
        for (const inst of second.healthcare.instances(SIIM_TRAIN_STORE)) {
          assert.deepEqual(
            second.store.readObject("kept", `train/${inst.studyUid}/${inst.seriesUid}/${inst.sopInstanceUid}.dcm`),
            inst.data(),
          );
        }
        const next = (
          await post(second, `/v1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://kept/again" } })
        ).name;
        assert.ok(BigInt(next.split("/").pop()!) > BigInt(name.split("/").pop()!), "operation ids keep increasing");
        await until(second, next);
      } finally {
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("QIDO limits, metadata and operations.list over HTTP", () => {
  test("studies are truncated silently at 5,000; paging past the end is []; a filtered miss is 204", async () => {
    const big = await startLocalCloud({ dataset: { train: 5_001, test: 1, instanceBytes: 256 } });
    try {
      const web = `${big.baseUrl}/v1/${SIIM_TRAIN_STORE}/dicomWeb`;
      const first = (await (await request(`${web}/studies?limit=6000`)).body.json()) as unknown[];
      assert.equal(first.length, 5000);
      const rest = (await (await request(`${web}/studies?limit=6000&offset=5000`)).body.json()) as Array<
        Record<string, { Value: string[] }>
      >;
      assert.deepEqual(
        rest.map((r) => r["0020000D"]!.Value[0]),
        [big.healthcare.instances(SIIM_TRAIN_STORE)[5000]!.studyUid],
      );
      assert.equal(((await (await request(`${web}/studies`)).body.json()) as unknown[]).length, 100, "default limit");
      const past = await request(`${web}/instances?offset=6000`);
      assert.equal(past.statusCode, 200);
      assert.deepEqual(await past.body.json(), []);
      const miss = await request(`${web}/instances?SOPInstanceUID=1.2.3`);
      assert.equal(miss.statusCode, 204);
      await miss.body.dump();
    } finally {
      await big.close();
    }
  });

  test("includefield over HTTP; /metadata; nested searches; operations.list pages", async () => {
    const web = `/v1/${SIIM_TRAIN_STORE}/dicomWeb`;
    const inst = cloud.healthcare.instances(SIIM_TRAIN_STORE)[2] as GeneratedInstance;
    const rows = (
      await call(
        "GET",
        `${web}/instances?SOPInstanceUID=${inst.sopInstanceUid}&includefield=ViewPosition&includefield=00100040`,
      )
    ).json();
    assert.deepEqual(rows[0]["00185101"], { vr: "CS", Value: [inst.viewPosition] });
    assert.deepEqual(rows[0]["00100040"], { vr: "CS", Value: [inst.patientSex] });
    const series = (await call("GET", `${web}/studies/${inst.studyUid}/series`)).json();
    assert.deepEqual(
      series.map((r: Record<string, { Value: string[] }>) => r["0020000E"]!.Value[0]),
      [inst.seriesUid],
    );
    const nested = (await call("GET", `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances`)).json();
    assert.equal(nested.length, 1);
    const meta = await call(
      "GET",
      `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances/${inst.sopInstanceUid}/metadata`,
    );
    assert.equal(meta.headers["content-type"], "application/dicom+json; charset=utf-8");
    assert.deepEqual(meta.json()[0]["00180015"], { vr: "CS", Value: ["CHEST"] });
    assert.equal((await call("GET", `${web}/studies/1.2.3/metadata`)).status, 404);

    const all: string[] = [];
    let token = "";
    do {
      const page = (
        await call("GET", `/v1/${SIIM_DATASET_PATH}/operations?pageSize=2${token === "" ? "" : `&pageToken=${token}`}`)
      ).json();
      assert.ok(page.operations.length <= 2);
      all.push(...page.operations.map((o: { name: string }) => o.name));
      token = page.nextPageToken ?? "";
    } while (token !== "");
    assert.deepEqual(
      all,
      cloud.healthcare.operations(SIIM_DATASET_PATH).map((o) => o.name),
    );
    assert.equal((await call("GET", `/v1/${SIIM_DATASET_PATH}/operations?pageToken=bogus`)).status, 400);
  });
});

describe("hcexport emulator (from source)", () => {
  test("prints exactly the listening line on stdout, hints on stderr, serves, and stops on SIGINT", async () => {
    const child = spawn(
      process.execPath,
      ["src/cli/main.ts", "emulator", "--port", "0", "--dataset", "siim", "--train", "5", "--test", "2"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.stdout.setEncoding("utf8");
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on("data", (d: string) => {
        stdout += d;
        const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)\n$/.exec(stdout);
        if (m) resolve(m[1]!);
      });
      child.once("exit", () => reject(new Error(`exited early: ${stdout} ${stderr}`)));
    });
    try {
      const rm = await request(`${url}/v1/projects/${SIIM.project}`);
      assert.equal(((await rm.body.json()) as { projectNumber: string }).projectNumber, SIIM.projectNumber);
      const qido = await request(`${url}/v1/${SIIM_TEST_STORE}/dicomWeb/instances`);
      assert.equal(((await qido.body.json()) as unknown[]).length, 2);
      assert.match(stderr, /--gcs-endpoint http:\/\/127\.0\.0\.1:\d+\/storage\/v1\//);
      assert.match(stderr, /CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE=/);
      assert.match(stderr, /apiEndpoint/);
    } finally {
      child.kill("SIGINT");
    }
    const [code] = await once(child, "exit");
    assert.equal(code, 0);
    assert.equal(stdout, `listening on ${url}\n`, "nothing else on stdout");
  });
});
