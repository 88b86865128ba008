import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import dicomParser from "dicom-parser";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { annotationsCsv, annotationStats } from "../../src/emulator/dataset/annotations.ts";
import { qidoSearch } from "../../src/emulator/healthcare/qido.ts";
import { peer } from "../support/peers.ts";

const opts = { seed: 7, instanceBytes: 150_000, storeIndex: 0 };

describe("generated DICOM instances", () => {
  test("are deterministic for a seed and differ across seeds and stores", () => {
    const a = generateInstance(3, opts);
    const b = generateInstance(3, opts);
    assert.equal(a.sopInstanceUid, b.sopInstanceUid);
    assert.deepEqual(a.data(), b.data());
    assert.notEqual(generateInstance(3, { ...opts, seed: 8 }).sopInstanceUid, a.sopInstanceUid);
    assert.notEqual(generateInstance(3, { ...opts, storeIndex: 1 }).sopInstanceUid, a.sopInstanceUid);
  });

  test("have SIIM-shaped, valid, unique UIDs at the real dataset's size", () => {
    const uids = new Set<string>();
    for (let i = 0; i < 10_712; i++) {
      const inst = generateInstance(i, opts);
      for (const uid of [inst.studyUid, inst.seriesUid, inst.sopInstanceUid]) {
        assert.match(uid, /^1\.2\.276\.0\.7230010\.3\.1\.[234]\.8323329\.\d+\.\d+\.\d+$/);
        assert.ok(uid.length <= 64, uid);
      }
      uids.add(inst.sopInstanceUid);
    }
    assert.equal(uids.size, 10_712);
  });

  test("parse with an independent parser (dicom-parser) with consistent image attributes", () => {
    const inst = generateInstance(11, opts);
    const bytes = inst.data();
    assert.ok(Math.abs(bytes.length - 150_000) < 2_000, String(bytes.length));
    assert.equal(bytes.subarray(128, 132).toString("latin1"), "DICM");
    const ds = dicomParser.parseDicom(new Uint8Array(bytes));
    assert.equal(ds.string("x00020010"), "1.2.840.10008.1.2.1");
    assert.equal(ds.string("x00080018"), inst.sopInstanceUid);
    assert.equal(ds.string("x0020000d"), inst.studyUid);
    assert.equal(ds.string("x0020000e"), inst.seriesUid);
    assert.equal(ds.string("x00080060"), "CR");
    assert.equal(ds.string("x00180015"), "CHEST");
    const rows = ds.uint16("x00280010")!;
    const cols = ds.uint16("x00280011")!;
    assert.equal(ds.elements["x7fe00010"]!.length, rows * cols + ((rows * cols) % 2));
  });

  test("pass dcmtk's dcmftest and dcmdump", (t) => {
    const p = peer("dcmftest");
    if (p.skip) return t.skip(p.skip);
    const dir = mkdtempSync(path.join(os.tmpdir(), "hcx-dcm-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const files = [0, 1, 2, 500].map((i) => {
      const f = path.join(dir, `${i}.dcm`);
      writeFileSync(f, generateInstance(i, { ...opts, instanceBytes: 20_000 }).data());
      return f;
    });
    const out = execFileSync("dcmftest", files, { encoding: "utf8" });
    assert.equal(out.trim().split("\n").filter((l) => l.startsWith("yes:")).length, files.length, out);
    const dump = execFileSync("dcmdump", ["+E", files[0]!], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    assert.match(dump, /\(0008,0016\) UI =SecondaryCaptureImageStorage/);
    assert.match(dump, /\(0028,0004\) CS \[MONOCHROME2\]/);
    assert.doesNotMatch(dump, /^[EW]:/m);
  });
});

describe("annotations CSV", () => {
  test("has SIIM's header, one row per mask, ' -1' for negatives, and ~22 % positives", () => {
    const instances = Array.from({ length: 2000 }, (_, i) => generateInstance(i, opts));
    const csv = annotationsCsv(instances, 7);
    assert.equal(csv.split("\n")[0], "ImageId, EncodedPixels");
    const stats = annotationStats(csv);
    assert.equal(stats.images, 2000);
    assert.ok(stats.positive > 300 && stats.positive < 600, JSON.stringify(stats));
    assert.ok(stats.masks > stats.positive, "some images have several masks");
    for (const line of csv.trim().split("\n").slice(1)) assert.match(line, /^[\d.]+, (-1|\d+ \d+( \d+ \d+)*)$/);
    assert.equal(annotationsCsv(instances, 7), csv);
  });
});

describe("QIDO search", () => {
  const instances = Array.from({ length: 12 }, (_, i) => generateInstance(i, { ...opts, instanceBytes: 1000 }));
  test("pages with limit/offset in a stable order", () => {
    const all = qidoSearch(instances, "instances", {}, new URLSearchParams()).map((r) => r["00080018"]!.Value![0]);
    const paged = [0, 5, 10].flatMap((o) => qidoSearch(instances, "instances", {}, new URLSearchParams({ limit: "5", offset: String(o) })).map((r) => r["00080018"]!.Value![0]));
    assert.equal(all.length, 12);
    assert.deepEqual(paged, all);
  });
  test("matches UIDs and rejects unknown parameters", () => {
    const uid = instances[4]!.studyUid;
    const rows = qidoSearch(instances, "studies", {}, new URLSearchParams({ StudyInstanceUID: uid }));
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!["0020000D"]!.Value![0], uid);
    assert.throws(() => qidoSearch(instances, "instances", {}, new URLSearchParams({ Bogus: "1" })), /invalid QIDO-RS query parameter/);
  });
  test("silently caps limit at the level's maximum", () => {
    const many = Array.from({ length: 5_100 }, (_, i) => generateInstance(i, { ...opts, instanceBytes: 100 }));
    assert.equal(qidoSearch(many, "studies", {}, new URLSearchParams({ limit: "6000" })).length, 5000);
    assert.equal(qidoSearch(many, "studies", {}, new URLSearchParams()).length, 100);
  });
});
