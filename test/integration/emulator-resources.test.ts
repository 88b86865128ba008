import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { generateInstance, type GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { SIIM, SIIM_DATASET_PATH, SIIM_FHIR_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";

/**
 * The Healthcare resource surface of the local cloud on the wire: google.rpc envelopes, LROs,
 * paging, IAM etags, STOW-RS response datasets, import counters, FHIR search and export.
 */
let cloud: LocalCloud;
let tmp: string;
const P = "projects/res-project/locations/us-central1";

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-res-"));
  cloud = await startLocalCloud({ dataset: { train: 7, test: 2 } });
});
after(async () => {
  await cloud.close();
  await rm(tmp, { recursive: true, force: true });
});

/** Parsed JSON, as loosely typed as JSON.parse's own result. */
type Json = ReturnType<typeof JSON.parse>;

interface Answer {
  status: number;
  type: string;
  body: Buffer;
  json: () => Json;
}

async function call(method: string, p: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = Buffer.isBuffer(body) ? body : JSON.stringify(body);
    if (!Buffer.isBuffer(body)) (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const r = await fetch(p.startsWith("http") ? p : `${cloud.baseUrl}${p}`, init);
  const buf = Buffer.from(await r.arrayBuffer());
  return {
    status: r.status,
    type: r.headers.get("content-type") ?? "",
    body: buf,
    json: () => JSON.parse(buf.toString()),
  };
}

function assertEnvelope(a: Answer, code: number, status: string): void {
  assert.equal(a.status, code, a.body.toString());
  const e = a.json().error;
  assert.equal(e.code, code);
  assert.equal(e.status, status);
  assert.equal(typeof e.message, "string");
}

async function waitDone(opName: string): Promise<Json> {
  for (let i = 0; i < 200; i++) {
    const op = (await call("GET", `/v1/${opName}`)).json();
    if (op.done) return op;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`operation ${opName} did not finish`);
}

function instance(i: number, storeIndex = 40): Buffer {
  return generateInstance(i, { seed: 3, instanceBytes: 3000, storeIndex }).data();
}

function multipart(parts: Buffer[], boundary = "hcx-b0undary"): { body: Buffer; type: string } {
  const chunks: Buffer[] = [];
  for (const p of parts)
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), p, Buffer.from("\r\n"));
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

describe("locations, datasets, stores", () => {
  test("locations list and get; an unknown location is a NOT_FOUND envelope", async () => {
    const list = (await call("GET", `/v1/projects/res-project/locations`)).json();
    assert.ok(list.locations.some((l: Json) => l.locationId === "us-central1" && l.name === P));
    assert.equal((await call("GET", `/v1/${P}`)).json().locationId, "us-central1");
    assertEnvelope(await call("GET", `/v1/projects/res-project/locations/mars-north1`), 404, "NOT_FOUND");
  });

  test("datasets.create answers an Operation that ends with the Dataset; 409 on a second create; paged list", async () => {
    const created = await call("POST", `/v1/${P}/datasets?datasetId=ds-0`, { timeZone: "Europe/Paris" });
    assert.equal(created.status, 200);
    const op = created.json();
    assert.match(op.name, new RegExp(`^${P}/datasets/ds-0/operations/\\d+$`));
    assert.equal(op.metadata.apiMethodName, "google.cloud.healthcare.v1.dataset.DatasetService.CreateDataset");
    const done = await waitDone(op.name);
    assert.deepEqual(done.response, {
      "@type": "type.googleapis.com/google.cloud.healthcare.v1.dataset.Dataset",
      name: `${P}/datasets/ds-0`,
      timeZone: "Europe/Paris",
    });
    assertEnvelope(await call("POST", `/v1/${P}/datasets?datasetId=ds-0`, {}), 409, "ALREADY_EXISTS");
    assertEnvelope(await call("POST", `/v1/${P}/datasets?datasetId=bad/id`, {}), 400, "INVALID_ARGUMENT");
    assertEnvelope(await call("POST", `/v1/${P}/datasets?datasetId=x`, { colour: 1 }), 400, "INVALID_ARGUMENT");
    for (let i = 1; i < 5; i++)
      assert.equal((await call("POST", `/v1beta1/${P}/datasets?datasetId=ds-${i}`, {})).status, 200);
    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = (await call("GET", `/v1/${P}/datasets?pageSize=2${token ? `&pageToken=${token}` : ""}`)).json();
      assert.ok(page.datasets.length <= 2);
      seen.push(...page.datasets.map((d: Json) => d.name.split("/").pop()));
      token = page.nextPageToken ?? "";
      pages++;
    } while (token !== "");
    assert.deepEqual(seen, ["ds-0", "ds-1", "ds-2", "ds-3", "ds-4"]);
    assert.equal(pages, 3);
    assert.equal((await call("GET", `/v1/${P}/datasets/ds-1`)).json().timeZone, "UTC");
    assertEnvelope(await call("GET", `/v1/${P}/datasets?pageToken=garbage`), 400, "INVALID_ARGUMENT");
  });

  test("DICOM stores: create, 409, get, patch with updateMask, filter by label, delete then 404", async () => {
    const base = `/v1/${P}/datasets/ds-0/dicomStores`;
    const made = await call("POST", `${base}?dicomStoreId=s1`, { labels: { team: "a" } });
    assert.deepEqual(made.json(), { name: `${P}/datasets/ds-0/dicomStores/s1`, labels: { team: "a" } });
    assertEnvelope(await call("POST", `${base}?dicomStoreId=s1`, {}), 409, "ALREADY_EXISTS");
    assertEnvelope(await call("POST", `/v1/${P}/datasets/nope/dicomStores?dicomStoreId=s1`, {}), 404, "NOT_FOUND");
    assertEnvelope(
      await call("POST", `${base}?dicomStoreId=s9`, { notificationConfig: { pubsubTopic: "topic-without-project" } }),
      400,
      "INVALID_ARGUMENT",
    );
    await call("POST", `${base}?dicomStoreId=s2`, { labels: { team: "b" } });
    const patched = await call("PATCH", `${base}/s1?updateMask=labels,notificationConfig.pubsubTopic,streamConfigs`, {
      labels: { team: "c", tier: "gold" },
      notificationConfig: { pubsubTopic: "projects/res-project/topics/t" },
      streamConfigs: [{ bigqueryDestination: { tableUri: "bq://res-project.d.t" } }],
    });
    assert.deepEqual(patched.json(), {
      name: `${P}/datasets/ds-0/dicomStores/s1`,
      labels: { team: "c", tier: "gold" },
      notificationConfig: { pubsubTopic: "projects/res-project/topics/t" },
      streamConfigs: [{ bigqueryDestination: { tableUri: "bq://res-project.d.t" } }],
    });
    // A masked field absent from the body is cleared; fields outside the mask are kept.
    const cleared = (await call("PATCH", `${base}/s1?updateMask=streamConfigs`, {})).json();
    assert.equal(cleared.streamConfigs, undefined);
    assert.deepEqual(cleared.labels, { team: "c", tier: "gold" });
    assertEnvelope(await call("PATCH", `${base}/s1`, { labels: {} }), 400, "INVALID_ARGUMENT");
    assertEnvelope(await call("PATCH", `${base}/s1?updateMask=name`, {}), 400, "INVALID_ARGUMENT");
    const filtered = (await call("GET", `${base}?filter=${encodeURIComponent("labels.team=c")}`)).json();
    assert.deepEqual(
      filtered.dicomStores.map((s: Json) => s.name.split("/").pop()),
      ["s1"],
    );
    const all = (await call("GET", `${base}?pageSize=1`)).json();
    assert.equal(all.dicomStores.length, 1);
    assert.ok(all.nextPageToken);
    assert.deepEqual((await call("DELETE", `${base}/s2`)).json(), {});
    assertEnvelope(await call("GET", `${base}/s2`), 404, "NOT_FOUND");
  });

  test("FHIR stores: version required on v1 and validated; immutable version; the SIIM store is listed", async () => {
    const base = `/v1/${P}/datasets/ds-0/fhirStores`;
    assertEnvelope(await call("POST", `${base}?fhirStoreId=f0`, {}), 400, "INVALID_ARGUMENT");
    assertEnvelope(await call("POST", `${base}?fhirStoreId=f0`, { version: "R9" }), 400, "INVALID_ARGUMENT");
    const f = (await call("POST", `${base}?fhirStoreId=f1`, { version: "R4", enableUpdateCreate: true })).json();
    assert.deepEqual(f, { name: `${P}/datasets/ds-0/fhirStores/f1`, version: "R4", enableUpdateCreate: true });
    assertEnvelope(await call("PATCH", `${base}/f1?updateMask=version`, { version: "STU3" }), 400, "INVALID_ARGUMENT");
    const siim = (await call("GET", `/v1/${SIIM_DATASET_PATH}/fhirStores`)).json();
    assert.deepEqual(siim.fhirStores, [{ name: SIIM_FHIR_STORE, version: "R4" }]);
  });

  test("IAM: empty policy etag ACAB, set returns a new etag, a stale etag is 409 ABORTED, missing resource 404", async () => {
    const res = `/v1/${SIIM_TRAIN_STORE}`;
    const empty = (await call("GET", `${res}:getIamPolicy?options.requestedPolicyVersion=3`)).json();
    assert.deepEqual(empty, { etag: "ACAB" });
    const binding = { role: "roles/healthcare.dicomViewer", members: ["user:ana@example.com"] };
    const set = (await call("POST", `${res}:setIamPolicy`, { policy: { bindings: [binding], etag: "ACAB" } })).json();
    assert.deepEqual(set.bindings, [binding]);
    assert.notEqual(set.etag, "ACAB");
    assert.deepEqual((await call("GET", `${res}:getIamPolicy`)).json(), set);
    assertEnvelope(
      await call("POST", `${res}:setIamPolicy`, { policy: { bindings: [], etag: "ACAB" } }),
      409,
      "ABORTED",
    );
    assertEnvelope(
      await call("POST", `${res}:setIamPolicy`, { policy: { bindings: [{ role: "roles/x", members: ["nobody"] }] } }),
      400,
      "INVALID_ARGUMENT",
    );
    assertEnvelope(await call("GET", `/v1/${P}/datasets/ghost:getIamPolicy`), 404, "NOT_FOUND");
    const ds = (
      await call("POST", `/v1/${SIIM_DATASET_PATH}:setIamPolicy`, { policy: { bindings: [binding] } })
    ).json();
    assert.equal(ds.version, 1);
    // An empty dataset made through the API answers testIamPermissions like one holding stores.
    const held = (
      await call("POST", `/v1/${P}/datasets/ds-1:testIamPermissions`, { permissions: ["healthcare.datasets.get"] })
    ).json();
    assert.deepEqual(held, { permissions: ["healthcare.datasets.get"] });
  });

  test("what is still not implemented answers 501 naming the method and path", async () => {
    for (const [method, p] of [
      ["POST", `/v1/${SIIM_TRAIN_STORE}:deidentify`],
      ["POST", `/v1/${SIIM_FHIR_STORE}/fhir/Patient`],
      ["GET", `/v1/${SIIM_DATASET_PATH}/hl7V2Stores`],
    ] as const) {
      const r = await call(method, p, method === "GET" ? undefined : {});
      assertEnvelope(r, 501, "UNIMPLEMENTED");
      assert.ok(r.json().error.message.includes(`${method} ${p}`), r.json().error.message);
    }
  });
});

describe("users' own data", () => {
  const store = `${P}/datasets/ds-0/dicomStores/own`;
  const web = `/v1/${store}/dicomWeb`;
  const a = instance(0);
  const b = instance(1);

  before(async () => {
    assert.equal((await call("POST", `/v1/${P}/datasets/ds-0/dicomStores?dicomStoreId=own`, {})).status, 200);
  });

  test("STOW-RS: 202 with ReferencedSOPSequence and FailedSOPSequence, then 409 duplicates, 0xA900 for another study", async () => {
    const { body, type } = multipart([a, Buffer.from("this is not DICOM"), b]);
    const r = await call("POST", `${web}/studies`, body, { "content-type": type, accept: "application/dicom+json" });
    assert.equal(r.status, 202, r.body.toString());
    assert.match(r.type, /^application\/dicom\+json/);
    const ds = r.json();
    const refs = ds["00081199"].Value;
    assert.equal(refs.length, 2);
    const genA = generateInstance(0, { seed: 3, instanceBytes: 3000, storeIndex: 40 });
    assert.equal(refs[0]["00081155"].Value[0], genA.sopInstanceUid);
    assert.equal(refs[0]["00081150"].Value[0], "1.2.840.10008.5.1.4.1.1.7");
    assert.equal(
      refs[0]["00081190"].Value[0],
      `${cloud.baseUrl}${web}/studies/${genA.studyUid}/series/${genA.seriesUid}/instances/${genA.sopInstanceUid}`,
    );
    assert.deepEqual(ds["00081198"].Value, [{ "00081197": { vr: "US", Value: [0xc000] } }]);
    // The exact bytes come back from WADO-RS, and QIDO-RS serves the file's own tags.
    const wado = await call(
      "GET",
      `${web}/studies/${genA.studyUid}/series/${genA.seriesUid}/instances/${genA.sopInstanceUid}`,
      undefined,
      {
        accept: "application/dicom; transfer-syntax=*",
      },
    );
    assert.equal(wado.status, 200);
    assert.ok(wado.body.equals(a));
    const rows = (await call("GET", `${web}/instances?PatientID=${genA.patientId}&includefield=all`)).json();
    assert.equal(rows.length, 1);
    assert.deepEqual(rows[0]["00100040"], { vr: "CS", Value: [genA.patientSex] });
    assert.deepEqual(rows[0]["00280010"], { vr: "US", Value: [genA.side] });
    const studies = (await call("GET", `${web}/studies?includefield=NumberOfStudyRelatedInstances`)).json();
    assert.equal(studies.length, 2);

    const again = await call("POST", `${web}/studies`, multipart([a]).body, { "content-type": type });
    assert.equal(again.status, 409);
    assert.equal(again.json()["00081198"].Value[0]["00081197"].Value[0], 0x0111);
    const wrong = await call("POST", `${web}/studies/1.2.3.4`, multipart([instance(5)]).body, { "content-type": type });
    assert.equal(wrong.status, 409);
    assert.equal(wrong.json()["00081198"].Value[0]["00081197"].Value[0], 0xa900);
    const single = await call("POST", `${web}/studies`, instance(6), { "content-type": "application/dicom" });
    assert.equal(single.status, 200);
    assert.equal(single.json()["00081199"].Value.length, 1);
    const bad = await call("POST", `${web}/studies`, Buffer.from("{}"), { "content-type": "application/json" });
    assert.equal(bad.status, 415);
  });

  test("import from gs:// wildcards: ** across folders, * within one, non-DICOM files count as failures", async () => {
    const bucket = "res-import";
    cloud.store.createBucket({ name: bucket, projectNumber: "1" });
    const files = [0, 1, 2, 3].map((i) => instance(i, 41));
    cloud.store.putObject(bucket, "in/a.dcm", files[0]!, "application/dicom");
    cloud.store.putObject(bucket, "in/sub/b.dcm", files[1]!, "application/dicom");
    cloud.store.putObject(bucket, "in/sub/deeper/c.dcm", files[2]!, "application/dicom");
    cloud.store.putObject(bucket, "in/d.bin", files[3]!, "application/octet-stream");
    cloud.store.putObject(bucket, "in/sub/notes.dcm", Buffer.from("not a DICOM file"), "application/dicom");
    const target = `${P}/datasets/ds-0/dicomStores/imported`;
    await call("POST", `/v1/${P}/datasets/ds-0/dicomStores?dicomStoreId=imported`, {});
    const start = (uri: string) => call("POST", `/v1/${target}:import`, { gcsSource: { uri } });

    // Without read access for the service agent: PERMISSION_DENIED, like the real import.
    const denied = await waitDone((await start(`gs://${bucket}/in/**.dcm`)).json().name);
    assert.equal(denied.error.code, 7);
    const agent = `serviceAccount:service-${cloud.projects.ensure("res-project").projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`;
    cloud.store.setPolicy(bucket, { version: 1, bindings: [{ role: "roles/storage.objectViewer", members: [agent] }] });

    const op = (await start(`gs://${bucket}/in/**.dcm`)).json();
    assert.equal(op.metadata.apiMethodName, "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData");
    const done = await waitDone(op.name);
    assert.deepEqual(done.metadata.counter, { success: "3", failure: "1" });
    assert.equal(done.error.code, 13);
    assert.equal(done.error.details[0].sampleErrors[0].resource, `gs://${bucket}/in/sub/notes.dcm`);
    const stored = cloud.healthcare.instances(target);
    assert.equal(stored.length, 3);
    assert.ok(stored.every((s, i) => s.data().equals(files[i]!)));

    const flat = await waitDone((await start(`gs://${bucket}/in/*`)).json().name);
    assert.deepEqual(flat.metadata.counter, { success: "2" }, "in/a.dcm and in/d.bin, not the subfolders");
    assert.equal(
      flat.response["@type"],
      "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse",
    );
    assert.equal(cloud.healthcare.instances(target).length, 4);
    const none = await waitDone((await start(`gs://${bucket}/nothing/**`)).json().name);
    assert.equal(none.error.code, 5);
  });

  test("emulator --load: project with a Resource Manager number, dataset and store created, bytes as on disk", async () => {
    const dir = path.join(tmp, "mine");
    await mkdir(path.join(dir, "sub"), { recursive: true });
    const files = [instance(0, 50), instance(1, 50)];
    await writeFile(path.join(dir, "one.dcm"), files[0]!);
    await writeFile(path.join(dir, "sub", "two"), files[1]!);
    await writeFile(path.join(dir, "README.txt"), "not DICOM");
    const name = "projects/my-own-project/locations/europe-west4/datasets/mine/dicomStores/ct";
    const own = await startLocalCloud({ load: [{ store: name, dir }] });
    try {
      assert.equal(own.loaded[0]!.loaded, 2);
      assert.equal(own.loaded[0]!.skipped.length, 1);
      const number = ((await (await fetch(`${own.baseUrl}/v1/projects/my-own-project`)).json()) as Json).projectNumber;
      assert.equal(own.loaded[0]!.serviceAgent, `service-${number}@gcp-sa-healthcare.iam.gserviceaccount.com`);
      const ds = await fetch(`${own.baseUrl}/v1/projects/my-own-project/locations/europe-west4/datasets/mine`);
      assert.equal(ds.status, 200);
      const st = (await (await fetch(`${own.baseUrl}/v1/${name}`)).json()) as Json;
      assert.equal(st.name, name);
      assert.deepEqual(
        own.healthcare.instances(name).map((i) => i.data()),
        files,
      );
    } finally {
      await own.close();
    }
  });
});

describe("FHIR", () => {
  test("search: _count pages through link next to every Patient; strict handling refuses unknown parameters", async () => {
    const base = `/v1/${SIIM_FHIR_STORE}/fhir`;
    const ids: string[] = [];
    let next: string | undefined = `${base}/Patient?_count=3`;
    let pages = 0;
    while (next !== undefined) {
      const r = await call("GET", next);
      assert.equal(r.status, 200);
      assert.match(r.type, /^application\/fhir\+json/);
      const bundle = r.json();
      assert.equal(bundle.resourceType, "Bundle");
      assert.equal(bundle.type, "searchset");
      assert.equal(bundle.total, 7);
      assert.ok(bundle.entry.length <= 3);
      for (const e of bundle.entry) {
        assert.equal(e.fullUrl, `${cloud.baseUrl}${base}/Patient/${e.resource.id}`);
        ids.push(e.resource.id);
      }
      next = bundle.link.find((l: Json) => l.relation === "next")?.url;
      pages++;
    }
    assert.equal(pages, 3);
    assert.deepEqual(ids, [...new Set(ids)].sort());
    const train = cloud.healthcare.instances(SIIM_TRAIN_STORE) as readonly GeneratedInstance[];
    assert.deepEqual(ids, train.map((t) => t.patientId).sort());
    const one = (await call("GET", `${base}/Patient?_id=${train[0]!.patientId}`)).json();
    assert.equal(one.total, 1);
    const doc = (await call("GET", `${base}/DocumentReference?status=current`)).json();
    assert.equal(doc.entry[0].resource.id, SIIM.documentReference);
    assert.equal((await call("GET", `${base}/Patient?colour=red`)).json().total, 7, "lenient: ignored");
    const strict = await call("GET", `${base}/Patient?colour=red`, undefined, { prefer: "handling=strict" });
    assert.equal(strict.status, 400);
    assert.equal(strict.json().resourceType, "OperationOutcome");
  });

  test("fhirStores.export writes PREFIX/ResourceType as NDJSON, gated on the service agent's objectAdmin", async () => {
    const bucket = "res-fhir";
    cloud.store.createBucket({ name: bucket, projectNumber: "1" });
    const start = () =>
      call("POST", `/v1/${SIIM_FHIR_STORE}:export`, { gcsDestination: { uriPrefix: `gs://${bucket}/fhir/` } });
    const denied = await waitDone((await start()).json().name);
    assert.equal(denied.error.code, 7);
    cloud.store.setPolicy(bucket, {
      version: 1,
      bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
    });
    const op = (await start()).json();
    assert.equal(op.metadata.apiMethodName, "google.cloud.healthcare.v1.fhir.FhirStoreService.ExportResources");
    const done = await waitDone(op.name);
    assert.equal(done.response["@type"], "type.googleapis.com/google.cloud.healthcare.v1.fhir.ExportResourcesResponse");
    assert.deepEqual(done.metadata.counter, { success: "8" });
    const names = cloud.store.listObjects(bucket, { limit: 100 }).map((o) => o.name);
    assert.deepEqual(names, ["fhir/DocumentReference", "fhir/Patient"]);
    const lines = cloud.store.readObject(bucket, "fhir/Patient")!.toString().trimEnd().split("\n");
    assert.equal(lines.length, 7);
    assert.ok(lines.every((l) => JSON.parse(l).resourceType === "Patient"));
    const typed = await waitDone(
      (
        await call("POST", `/v1/${SIIM_FHIR_STORE}:export`, {
          gcsDestination: { uriPrefix: `gs://${bucket}/only` },
          _type: "DocumentReference",
        })
      ).json().name,
    );
    assert.deepEqual(typed.metadata.counter, { success: "1" });
    assert.equal(cloud.store.getObject(bucket, "only/Patient"), undefined);
  });
});

describe("--data DIR keeps the Healthcare resources", () => {
  test("datasets, stores with their fields, IAM policies and STOWed bytes survive a restart", async () => {
    const dataDir = path.join(tmp, "data");
    const name = "projects/keep/locations/us-central1/datasets/kept";
    const store = `${name}/dicomStores/s`;
    const bytes = instance(0, 60);
    const first = await startLocalCloud({ dataDir, dataset: { train: 2, test: 1 } });
    let etag: string;
    try {
      const u = first.baseUrl;
      await fetch(`${u}/v1/projects/keep/locations/us-central1/datasets?datasetId=kept`, {
        method: "POST",
        body: "{}",
      });
      await fetch(`${u}/v1/${name}/dicomStores?dicomStoreId=s`, { method: "POST", body: '{"labels":{"k":"v"}}' });
      const { body, type } = multipart([bytes]);
      const stowed = await fetch(`${u}/v1/${store}/dicomWeb/studies`, {
        method: "POST",
        body,
        headers: { "content-type": type },
      });
      assert.equal(stowed.status, 200);
      const policy = (await (
        await fetch(`${u}/v1/${store}:setIamPolicy`, {
          method: "POST",
          body: JSON.stringify({
            policy: { bindings: [{ role: "roles/healthcare.dicomEditor", members: ["user:x@y.z"] }] },
          }),
        })
      ).json()) as { etag: string };
      etag = policy.etag;
    } finally {
      await first.close();
    }
    const second = await startLocalCloud({ dataDir });
    try {
      const u = second.baseUrl;
      assert.deepEqual(await (await fetch(`${u}/v1/${store}`)).json(), { name: store, labels: { k: "v" } });
      // The generated SIIM stores are made by --dataset at each start, not resurrected empty.
      assert.equal((await fetch(`${u}/v1/${SIIM_TRAIN_STORE}`)).status, 404);
      assert.equal(((await (await fetch(`${u}/v1/${name}`)).json()) as Json).timeZone, "UTC");
      assert.equal(((await (await fetch(`${u}/v1/${store}:getIamPolicy`)).json()) as Json).etag, etag);
      const g = generateInstance(0, { seed: 3, instanceBytes: 3000, storeIndex: 60 });
      const wado = await fetch(
        `${u}/v1/${store}/dicomWeb/studies/${g.studyUid}/series/${g.seriesUid}/instances/${g.sopInstanceUid}`,
        {
          headers: { accept: "application/dicom; transfer-syntax=*" },
        },
      );
      assert.equal(wado.status, 200);
      assert.ok(Buffer.from(await wado.arrayBuffer()).equals(bytes));
    } finally {
      await second.close();
    }
  });
});
