import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { inspectPart10 } from "../../src/dicomweb/part10.ts";
import { writePart10 } from "../../src/emulator/dataset/dicom-writer.ts";
import { SOP_CLASS_SECONDARY_CAPTURE } from "../../src/emulator/dataset/instances.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { cliIn } from "../support/cli.ts";
import { startOrthanc, type RunningOrthanc } from "../support/orthanc.ts";
import { peer } from "../support/peers.ts";

/**
 * Orthanc as an independent STOW-RS client: its DICOMweb plugin sends its instances to the
 * local cloud (`POST /dicom-web/servers/NAME/stow`), the store is exported to a bucket and
 * `hcexport mirror` brings it down — every mirrored file must be exactly Orthanc's own file.
 */
const orthanc = peer("Orthanc");
const PROJECT = "orthanc-rehearsal";
const DATASET = `projects/${PROJECT}/locations/us-central1/datasets/stowed`;
const STORE = `${DATASET}/dicomStores/from-orthanc`;
const BUCKET = "orthanc-stow-bucket";
const STUDIES = 2;
const SERIES = 2;
const PER_SERIES = 3;

let tmp: string;
let cloud: LocalCloud;
let server: RunningOrthanc | undefined;

function makeInstance(study: number, series: number, n: number): Buffer {
  const root = "1.2.826.0.1.3680043.10.1511.77";
  const studyUid = `${root}.1.${study + 1}`;
  const seriesUid = `${root}.2.${study + 1}.${series + 1}`;
  const sopUid = `${root}.3.${study + 1}.${series + 1}.${n + 1}`;
  const side = 40 + n;
  return writePart10(
    SOP_CLASS_SECONDARY_CAPTURE,
    sopUid,
    [
      { tag: 0x00080016, vr: "UI", value: SOP_CLASS_SECONDARY_CAPTURE },
      { tag: 0x00080018, vr: "UI", value: sopUid },
      { tag: 0x00080060, vr: "CS", value: "OT" },
      { tag: 0x00100010, vr: "PN", value: `Stow^${study + 1}` },
      { tag: 0x00100020, vr: "LO", value: `S${study + 1}` },
      { tag: 0x0020000d, vr: "UI", value: studyUid },
      { tag: 0x0020000e, vr: "UI", value: seriesUid },
      { tag: 0x00200013, vr: "IS", value: String(n + 1) },
      { tag: 0x00280002, vr: "US", value: 1 },
      { tag: 0x00280004, vr: "CS", value: "MONOCHROME2" },
      { tag: 0x00280010, vr: "US", value: side },
      { tag: 0x00280011, vr: "US", value: side },
      { tag: 0x00280100, vr: "US", value: 8 },
      { tag: 0x00280101, vr: "US", value: 8 },
      { tag: 0x00280102, vr: "US", value: 7 },
      { tag: 0x00280103, vr: "US", value: 0 },
    ],
    { length: side * side, fill: (t) => t.fill((study * 31 + series * 7 + n * 3) & 0xff) },
  );
}

before(async () => {
  if (orthanc.skip) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-orthanc-stow-"));
  cloud = await startLocalCloud({ exportInstancesPerSecond: 2000 });
  // The dataset and store are made through the API, as a user would (gcloud or REST).
  const post = (p: string) => fetch(`${cloud.baseUrl}/v1/${p}`, { method: "POST", body: "{}" });
  assert.equal((await post(`projects/${PROJECT}/locations/us-central1/datasets?datasetId=stowed`)).status, 200);
  assert.equal((await post(`${DATASET}/dicomStores?dicomStoreId=from-orthanc`)).status, 200);
  const o = await startOrthanc(orthanc.path!, tmp, {
    DicomWeb: { Servers: { hcx: { Url: `${cloud.baseUrl}/v1/${STORE}/dicomWeb/` } } },
  });
  server = o;
  for (let st = 0; st < STUDIES; st++)
    for (let se = 0; se < SERIES; se++)
      for (let n = 0; n < PER_SERIES; n++) {
        const r = await o.api("/instances", {
          method: "POST",
          body: makeInstance(st, se, n),
          headers: { "content-type": "application/dicom" },
        });
        assert.equal(r.status, 200, await r.text());
      }
});

after(async () => {
  await server?.stop();
  await cloud?.close();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

test(
  "Orthanc STOW-RS into the local cloud, export, hcexport mirror: Orthanc's exact bytes",
  { skip: orthanc.skip, timeout: 120_000 },
  async () => {
    const o = server!;
    const studies = (await (await o.api("/studies")).json()) as string[];
    assert.equal(studies.length, STUDIES);
    cloud.requests.clear();
    const stow = await o.api("/dicom-web/servers/hcx/stow", {
      method: "POST",
      body: JSON.stringify({ Resources: studies, Synchronous: true }),
    });
    assert.equal(
      stow.status,
      200,
      `${await stow.text()}\n${JSON.stringify(cloud.requests.summary())}\n${o
        .log()
        .split("\n")
        .filter((l) => !/PluginsManager|Initialization/.test(l))
        .slice(-15)
        .join("\n")}`,
    );
    assert.ok(cloud.requests.count("POST healthcare") >= 1, JSON.stringify(cloud.requests.summary()));
    const total = STUDIES * SERIES * PER_SERIES;
    assert.equal(cloud.healthcare.instances(STORE).length, total);

    // Sending the same studies again: every instance is a duplicate, the store answers 409 and
    // Orthanc reports the failure instead of claiming success.
    const again = await o.api("/dicom-web/servers/hcx/stow", {
      method: "POST",
      body: JSON.stringify({ Resources: [studies[0]], Synchronous: true }),
    });
    assert.notEqual(again.status, 200, "a STOW of duplicates is not a success");
    assert.equal(cloud.healthcare.instances(STORE).length, total);

    const cli = (argv: string[]) => cliIn(["--emulator", cloud.baseUrl, ...argv], { cwd: tmp, env: {} });
    for (const argv of [
      ["bucket", "ensure", `gs://${BUCKET}`, "--project", PROJECT],
      ["iam", "grant", `gs://${BUCKET}`, "--source-project", PROJECT],
      ["export", STORE, `gs://${BUCKET}/stowed`, "--wait"],
    ]) {
      const r = await cli(argv);
      assert.equal(r.code, 0, `${argv.join(" ")}: ${r.stderr}`);
    }
    const dest = path.join(tmp, "mirror");
    const mirrored = await cli(["mirror", `gs://${BUCKET}/stowed`, dest]);
    assert.equal(mirrored.code, 0, mirrored.stderr);

    const files = (await readdir(dest, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile() && !path.relative(dest, e.parentPath).startsWith(".hcexport"))
      .map((e) => path.relative(dest, path.join(e.parentPath, e.name)));
    assert.equal(files.length, total);
    for (const id of (await (await o.api("/instances")).json()) as string[]) {
      const own = Buffer.from(await (await o.api(`/instances/${id}/file`)).arrayBuffer());
      const r = inspectPart10(own);
      assert.ok(r.ok);
      const local = await readFile(
        path.join(dest, r.studyInstanceUid!, r.seriesInstanceUid!, `${r.sopInstanceUid}.dcm`),
      );
      assert.ok(local.equals(own), `mirrored ${r.sopInstanceUid} is Orthanc's file byte for byte`);
    }
  },
);
