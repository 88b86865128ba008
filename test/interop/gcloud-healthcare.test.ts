import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { SIIM, SIIM_DATASET_PATH, SIIM_FHIR_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { peer } from "../support/peers.ts";

/**
 * The Google Cloud CLI's `gcloud healthcare …` commands, unchanged, against the local cloud
 * (CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE): exit codes, `--format=json` output, and what the
 * commands did to the emulator's state. Invocations are kept few (each costs 1–2 s of CPU).
 */
const gcloud = peer("gcloud");
let cloud: LocalCloud;
let dir: string;
let env: NodeJS.ProcessEnv;
const BUCKET = "gcloud-hc-bucket";
const LOC = "--location=us-central1";

before(async () => {
  cloud = await startLocalCloud({ dataset: { train: 6, test: 2 }, exportInstancesPerSecond: 2000 });
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-gcloud-hc-"));
  env = {
    ...process.env,
    CLOUDSDK_CONFIG: path.join(dir, "config"),
    CLOUDSDK_API_ENDPOINT_OVERRIDES_HEALTHCARE: `${cloud.baseUrl}/`,
    CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
    CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
    CLOUDSDK_CORE_PROJECT: SIIM.project,
  };
  cloud.store.createBucket({ name: BUCKET, projectNumber: "1" });
  cloud.store.setPolicy(BUCKET, {
    version: 1,
    bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
  });
});
after(async () => {
  await cloud?.close();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

function hc(args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile("gcloud", ["healthcare", ...args], { env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr }),
    );
  });
}

async function json(args: string[]): Promise<ReturnType<typeof JSON.parse>> {
  const r = await hc([...args, "--format=json"]);
  assert.equal(r.code, 0, `gcloud healthcare ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

test(
  "gcloud healthcare datasets, dicom-stores, fhir-stores and operations work unchanged",
  { skip: gcloud.skip, timeout: 300_000 },
  async () => {
    // datasets list / describe / create (an LRO gcloud waits for).
    const datasets = await json(["datasets", "list", LOC]);
    assert.deepEqual(
      datasets.map((d: { name: string }) => d.name),
      [SIIM_DATASET_PATH],
    );
    assert.deepEqual(await json(["datasets", "describe", SIIM.dataset, LOC]), {
      name: SIIM_DATASET_PATH,
      timeZone: "UTC",
    });
    const created = await json(["datasets", "create", "rehearsal", LOC, "--time-zone=Europe/Berlin"]);
    const rehearsal = `projects/${SIIM.project}/locations/us-central1/datasets/rehearsal`;
    assert.deepEqual(created, { name: rehearsal, timeZone: "Europe/Berlin" });
    assert.ok(cloud.healthcare.datasets.has(rehearsal));

    // dicom-stores create / list / describe, and the NOT_FOUND envelope as gcloud reports it.
    const mine = await json(["dicom-stores", "create", "mine", "--dataset=rehearsal", LOC]);
    assert.equal(mine.name, `${rehearsal}/dicomStores/mine`);
    const stores = await json(["dicom-stores", "list", `--dataset=${SIIM.dataset}`, LOC]);
    assert.deepEqual(stores.map((s: { name: string }) => s.name).sort(), [
      `${SIIM_DATASET_PATH}/dicomStores/dicom-images-test`,
      SIIM_TRAIN_STORE,
    ]);
    assert.equal(
      (await json(["dicom-stores", "describe", SIIM.trainStore, `--dataset=${SIIM.dataset}`, LOC])).name,
      SIIM_TRAIN_STORE,
    );
    const missing = await hc(["dicom-stores", "describe", "no-such-store", `--dataset=${SIIM.dataset}`, LOC]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /NOT_FOUND: DICOM store ".*no-such-store" not found/);

    // IAM read-modify-write, twice (gcloud sends the etag back URL-safe base64 encoded).
    const member = "user:radiologist@example.com";
    const role = "roles/healthcare.dicomViewer";
    const added = await json([
      "dicom-stores",
      "add-iam-policy-binding",
      "mine",
      "--dataset=rehearsal",
      LOC,
      `--member=${member}`,
      `--role=${role}`,
    ]);
    assert.deepEqual(added.bindings, [{ role, members: [member] }]);
    const removed = await json([
      "dicom-stores",
      "remove-iam-policy-binding",
      "mine",
      "--dataset=rehearsal",
      LOC,
      `--member=${member}`,
      `--role=${role}`,
    ]);
    assert.equal(removed.bindings, undefined);
    assert.deepEqual(cloud.healthcare.iam.get(`${rehearsal}/dicomStores/mine`).bindings, undefined);

    // dicom-stores import gcs: the files land in the store, byte for byte; the non-DICOM one is not matched.
    const files = [0, 1, 2].map((i) => generateInstance(i, { seed: 9, instanceBytes: 4000, storeIndex: 30 }).data());
    files.forEach((f, i) =>
      cloud.store.putObject(BUCKET, `in/${i % 2 ? "sub/" : ""}f${i}.dcm`, f, "application/dicom"),
    );
    cloud.store.putObject(BUCKET, "in/readme.txt", Buffer.from("hello"), "text/plain");
    const imported = await hc([
      "dicom-stores",
      "import",
      "gcs",
      "mine",
      "--dataset=rehearsal",
      LOC,
      `--gcs-uri=gs://${BUCKET}/in/**.dcm`,
    ]);
    assert.equal(imported.code, 0, imported.stderr);
    const inStore = cloud.healthcare.instances(`${rehearsal}/dicomStores/mine`).map((i) => i.data());
    assert.equal(inStore.length, 3);
    for (const f of files) assert.ok(inStore.some((b) => b.equals(f)));

    // dicom-stores export gcs: gcloud waits, then GETs the store (the 501 that used to make it exit 1).
    const exported = await hc([
      "dicom-stores",
      "export",
      "gcs",
      SIIM.trainStore,
      `--dataset=${SIIM.dataset}`,
      LOC,
      `--gcs-uri-prefix=gs://${BUCKET}/train`,
      "--format=json",
    ]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal(JSON.parse(exported.stdout).name, SIIM_TRAIN_STORE);
    const train = cloud.healthcare.instances(SIIM_TRAIN_STORE);
    for (const inst of train) {
      const bytes = cloud.store.readObject(
        BUCKET,
        `train/${inst.studyUid}/${inst.seriesUid}/${inst.sopInstanceUid}.dcm`,
      );
      assert.ok(bytes?.equals(inst.data()), `exported ${inst.sopInstanceUid}`);
    }

    // fhir-stores export gcs: one NDJSON object per resource type.
    const fhir = await hc([
      "fhir-stores",
      "export",
      "gcs",
      SIIM.fhirStore,
      `--dataset=${SIIM.dataset}`,
      LOC,
      `--gcs-uri=gs://${BUCKET}/fhir`,
    ]);
    assert.equal(fhir.code, 0, fhir.stderr);
    assert.deepEqual(
      cloud.store.listObjects(BUCKET, { prefix: "fhir/", limit: 10 }).map((o) => o.name),
      ["fhir/DocumentReference", "fhir/Patient"],
    );
    assert.equal(cloud.store.readObject(BUCKET, "fhir/Patient")!.toString().trimEnd().split("\n").length, train.length);

    // operations list / describe.
    const ops = await json(["operations", "list", `--dataset=${SIIM.dataset}`, LOC]);
    const exportOp = ops.find((o: { metadata: { apiMethodName: string } }) =>
      o.metadata.apiMethodName.endsWith("ExportDicomData"),
    );
    assert.ok(exportOp?.done);
    assert.ok(
      ops.some((o: { metadata: { apiMethodName: string } }) => o.metadata.apiMethodName.endsWith("ExportResources")),
    );
    const id = exportOp.name.split("/").pop();
    const described = await json(["operations", "describe", id, `--dataset=${SIIM.dataset}`, LOC]);
    assert.deepEqual(described.metadata.counter, { success: String(train.length) });
    assert.equal(
      described.response["@type"],
      "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse",
    );

    // dicom-stores delete.
    const deleted = await hc(["dicom-stores", "delete", "mine", "--dataset=rehearsal", LOC]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(cloud.healthcare.dicomStores.has(`${rehearsal}/dicomStores/mine`), false);
    assert.ok(cloud.healthcare.fhirStores.has(SIIM_FHIR_STORE));
  },
);
