import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import dicomParser from "dicom-parser";
import { generateInstance, imageSide } from "../../src/emulator/dataset/instances.ts";
import { annotationsCsv, annotationStats } from "../../src/emulator/dataset/annotations.ts";
import { storedInstance } from "../../src/emulator/local-cloud.ts";
import { peer } from "../support/peers.ts";

const opts = { seed: 7, instanceBytes: 150_000, storeIndex: 0 };

describe("generated DICOM instances", () => {
  test("stored (emulator --stored): rendered once, the same Buffer on every call, the same bytes", () => {
    const inst = generateInstance(4, opts);
    assert.notEqual(inst.data(), inst.data(), "rendered per call by default");
    const kept = storedInstance(inst);
    assert.equal(kept.data(), kept.data());
    assert.ok(kept.data().equals(inst.data()));
    assert.equal(kept.sopInstanceUid, inst.sopInstanceUid);
  });

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

  test("relate their UIDs like SIIM's (instance N, study N-1, series N-2 on one tail) and carry UUID patient ids", () => {
    const inst = generateInstance(42, opts);
    const [, tail, n] = /^1\.2\.276\.0\.7230010\.3\.1\.4\.(8323329\.\d+\.\d+)\.(\d+)$/.exec(inst.sopInstanceUid)!;
    assert.equal(inst.studyUid, `1.2.276.0.7230010.3.1.2.${tail}.${Number(n) - 1}`);
    assert.equal(inst.seriesUid, `1.2.276.0.7230010.3.1.3.${tail}.${Number(n) - 2}`);
    assert.match(inst.patientId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const views = new Set(Array.from({ length: 50 }, (_, i) => generateInstance(i, opts).viewPosition));
    assert.deepEqual([...views].sort(), ["AP", "PA"]);
  });

  test("every pixel image differs between instances, and a size is honoured from 512 B to 150 KB", () => {
    const a = generateInstance(1, opts).data();
    const b = generateInstance(2, opts).data();
    assert.equal(a.length, b.length);
    assert.notDeepEqual(a.subarray(-1000), b.subarray(-1000));
    for (const size of [512, 8 * 1024, 150_000]) {
      const bytes = generateInstance(0, { ...opts, instanceBytes: size }).data();
      assert.ok(Math.abs(bytes.length - size) < Math.max(600, size * 0.02), `${size} → ${bytes.length}`);
      const side = imageSide(size);
      const ds = dicomParser.parseDicom(new Uint8Array(bytes));
      assert.equal(ds.uint16("x00280010"), side);
      assert.equal(ds.elements["x7fe00010"]!.length, side * side + ((side * side) % 2));
    }
  });

  test("generate a 150 KB instance in well under 2 ms (bytes on demand, nothing cached per instance)", () => {
    for (let i = 0; i < 200; i++) generateInstance(i, opts).data(); // warm the JIT
    const insts = Array.from({ length: 500 }, (_, i) => generateInstance(i, opts));
    const t0 = performance.now();
    let bytes = 0;
    for (const inst of insts) bytes += inst.data().length;
    const perInstance = (performance.now() - t0) / insts.length;
    process.stderr.write(
      `dataset generation: ${perInstance.toFixed(3)} ms per 150 KB instance (${Math.round(1000 / perInstance)}/s, ${Math.round(bytes / 1e6)} MB)\n`,
    );
    assert.ok(perInstance < 2, `${perInstance} ms per instance`);
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
    assert.equal(ds.string("x00080016"), "1.2.840.10008.5.1.4.1.1.7");
    assert.equal(ds.string("x00020003"), inst.sopInstanceUid);
    assert.equal(ds.string("x00280004"), "MONOCHROME2");
    assert.equal(ds.string("x00185101"), inst.viewPosition);
    assert.equal(ds.string("x00100020"), inst.patientId);
    assert.equal(ds.string("x00100040"), inst.patientSex);
    assert.equal(ds.uint16("x00280100"), 8);
    assert.equal(ds.uint16("x00280002"), 1);
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
    assert.equal(
      out
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("yes:")).length,
      files.length,
      out,
    );
    const dump = execFileSync("dcmdump", ["+E", files[0]!], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    assert.match(dump, /\(0008,0016\) UI =SecondaryCaptureImageStorage/);
    assert.match(dump, /\(0028,0004\) CS \[MONOCHROME2\]/);
    assert.match(dump, /\(0008,0060\) CS \[CR\]/);
    assert.match(dump, /\(0018,0015\) CS \[CHEST\]/);
    assert.match(dump, /\(0002,0010\) UI =LittleEndianExplicit/);
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
    const ids = new Set(instances.map((i) => i.sopInstanceUid));
    for (const line of csv.trim().split("\n").slice(1))
      assert.ok(ids.has(line.split(",")[0]!), "ImageId is a SOP Instance UID");
    assert.ok(csv.includes(", -1\n"), "negatives are written ' -1' as in train-rle.csv");
  });
});
