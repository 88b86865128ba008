import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_DATASET_PATH, SIIM_FHIR_STORE, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
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
  cloud = await startLocalCloud({ dataset: { train: 30, test: 7, instanceBytes: 4096 }, exportInstancesPerSecond: 2000 });
});
after(() => cloud.close());

describe("DICOM export", () => {
  test("without the service agent's binding: done with PERMISSION_DENIED and nothing written", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "no-iam-bucket" });
    const start = await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, { gcsDestination: { uriPrefix: "gs://no-iam-bucket/train" } });
    assert.equal(start.status, 200);
    const name = start.json().name as string;
    assert.match(name, new RegExp(`^${SIIM_DATASET_PATH}/operations/\\d+$`));
    const op = await waitDone(name);
    assert.deepEqual(op.error, { code: 7, message: "Healthcare API doesn't have required Cloud Storage permission. See https://cloud.google.com/healthcare/docs/how-tos/permissions-healthcare-api-gcp-products for more information" });
    assert.equal(op.response, undefined);
    assert.equal(cloud.store.objectCount("no-iam-bucket"), 0);
  });

  test("objectCreator is not enough", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "creator-bucket" });
    await grant("creator-bucket", "roles/storage.objectCreator");
    const op = await waitDone((await call("POST", `/v1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://creator-bucket/test" } })).json().name);
    assert.equal((op.error as { code: number }).code, 7);
  });

  test("with objectAdmin: one object per instance, byte-identical, counters as strings", async () => {
    await call("POST", "/storage/v1/b?project=my-project", { name: "good-bucket" });
    await grant("good-bucket", "roles/storage.objectAdmin");
    const name = (await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/train/" } })).json().name;
    const running = (await call("GET", `/v1/${name}`)).json();
    assert.equal(running.metadata["@type"], "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata");
    assert.equal(running.metadata.apiMethodName, "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData");
    const op = await waitDone(name);
    assert.deepEqual(op.response, { "@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse" });
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
    await waitDone((await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/train" } })).json().name);
    const afterMeta = cloud.store.getObject("good-bucket", before.name)!;
    assert.notEqual(afterMeta.generation, before.generation);
    assert.equal(afterMeta.crc32c, before.crc32c);
    assert.equal(cloud.store.objectCount("good-bucket"), instances.length);
  });

  test("v1beta1 works with v1beta1 types; unknown fields are 400 INVALID_ARGUMENT; missing store 404", async () => {
    const name = (await call("POST", `/v1beta1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/test" } })).json().name;
    const op = await waitDone(name, "v1beta1");
    assert.match(String((op.metadata as { apiMethodName: string }).apiMethodName), /^google\.cloud\.healthcare\.v1beta1\./);
    const bad = await call("POST", `/v1/${SIIM_TEST_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/x" }, outputConfig: {} });
    assert.equal(bad.status, 400);
    assert.equal(bad.json().error.status, "INVALID_ARGUMENT");
    assert.match(bad.json().error.message, /Unknown name "outputConfig": Cannot find field\./);
    assert.equal((await call("POST", `/v1/${SIIM_DATASET_PATH}/dicomStores/nope:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/x" } })).status, 404);
  });

  test("failures part-way end the operation with an error and counter.failure > 0", async () => {
    cloud.faults = { ...noFaults, exportFailureRate: 0.3, seed: 5 };
    try {
      const op = await waitDone((await call("POST", `/v1/${SIIM_TRAIN_STORE}:export`, { gcsDestination: { uriPrefix: "gs://good-bucket/partial" } })).json().name);
      const counter = (op.metadata as { counter: Record<string, string> }).counter;
      assert.ok(Number(counter["failure"]) > 0 && Number(counter["success"]) > 0, JSON.stringify(counter));
      assert.equal((op.error as { code: number }).code, 13);
    } finally {
      cloud.faults = { ...noFaults };
    }
  });

  test("cancel ends the operation with code 1; operations.list lists them all", async () => {
    const slow = await startLocalCloud({ dataset: { train: 50, test: 1, instanceBytes: 512 }, exportInstancesPerSecond: 20 });
    try {
      slow.store.createBucket({ name: "slow-bucket", projectNumber: "1" });
      slow.store.setPolicy("slow-bucket", { version: 1, bindings: [{ role: "roles/storage.objectAdmin", members: [AGENT] }] });
      const start = await request(`${slow.baseUrl}/v1/${SIIM_TRAIN_STORE}:export`, { method: "POST", body: JSON.stringify({ gcsDestination: { uriPrefix: "gs://slow-bucket/t" } }) });
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
      const r = await call("GET", `${web}/instances?limit=8&offset=${offset}&includefield=0020000D&includefield=0020000E`);
      if (r.status === 204) break;
      assert.equal(r.headers["content-type"], "application/dicom+json; charset=utf-8");
      const rows = r.json() as Array<Record<string, { Value: string[] }>>;
      seen.push(...rows.map((x) => x["00080018"]!.Value[0]!));
      if (rows.length < 8) break;
    }
    assert.deepEqual(seen.sort(), cloud.healthcare.instances(SIIM_TRAIN_STORE).map((i) => i.sopInstanceUid).sort());
    assert.equal((await call("GET", `${web}/studies?StudyInstanceUID=1.2.3.4`)).status, 204);
  });
  test("WADO-RS: single instance byte-identical; study as multipart/related", async () => {
    const inst = cloud.healthcare.instances(SIIM_TRAIN_STORE)[3]!;
    const one = await call("GET", `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances/${inst.sopInstanceUid}`, undefined, { accept: "application/dicom; transfer-syntax=*" });
    assert.equal(one.status, 200);
    assert.match(String(one.headers["content-type"]), /^application\/dicom/);
    assert.deepEqual(one.buf, inst.data());
    const study = await call("GET", `${web}/studies/${inst.studyUid}`, undefined, { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' });
    const boundary = /boundary=([^;]+)/.exec(String(study.headers["content-type"]))![1]!;
    const text = study.buf.toString("latin1");
    const start = text.indexOf("\r\n\r\n") + 4;
    const end = text.indexOf(`\r\n--${boundary}--`);
    assert.deepEqual(study.buf.subarray(start, end), inst.data());
    assert.equal((await call("GET", `${web}/studies/${inst.studyUid}/series/${inst.seriesUid}/instances/${inst.sopInstanceUid}`, undefined, { accept: "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50" })).status, 406);
    assert.equal((await call("GET", `${web}/studies/1.2.3/series/4.5/instances/6.7`, undefined, { accept: "application/dicom" })).status, 404);
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
