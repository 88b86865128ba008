import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { decode as decodePng } from "fast-png";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import type { GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { SIIM, SIIM_DATASET_PATH, SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { listFiles } from "../support/chaos.ts";
import { multiFrameInstance } from "../support/multiframe.ts";

// Export options through the user's door: the built CLI (`run`, `export`, `plan`, `status`) against
// the local cloud — mimeType per store (rendered PNGs decoded by fast-png, an independent decoder,
// and compared with DCMTK's rendering of the source instance) and the v1beta1 study/series filter.

const exec = promisify(execFile);
const cli = path.resolve("dist/cli/main.js");
const MF_STORE = `${SIIM_DATASET_PATH}/dicomStores/multiframe`;
const mf = [0, 1].map((k) => multiFrameInstance(k, { frames: 3, rows: 24, columns: 20 }));
const dcm2pnm = ["/usr/bin/dcm2pnm", "/usr/local/bin/dcm2pnm"].find((p) => existsSync(p));
let tmp: string;
let cloud: LocalCloud;
let train: readonly GeneratedInstance[];
let testSet: readonly GeneratedInstance[];

const rel = (i: { studyUid: string; seriesUid: string; sopInstanceUid: string }) =>
  `${i.studyUid}/${i.seriesUid}/${i.sopInstanceUid}`;
const files = async (dir: string) => (await listFiles(dir)).filter((f) => !f.startsWith(".hcexport/")).sort();
const exportPosts = () =>
  cloud.requests.entries.filter((e) => e.method === "POST" && e.kind === "healthcare" && e.path.endsWith(":export"));

async function hcexport(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await exec(process.execPath, [cli, ...args], { timeout: 120_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function writeConfig(name: string, exports: unknown[]): Promise<string> {
  const file = path.join(tmp, `${name}.json`);
  await writeFile(
    file,
    JSON.stringify({
      project: "my-e2e-project",
      bucket: { name: `opt-${name}`, location: "us-central1" },
      grantIam: true,
      exports,
      stateDir: `${name}/.hcexport`,
    }),
  );
  return file;
}

/** DCMTK's rendering of frame `n` (1-based) of a Part 10 file, as 8-bit gray (binary PGM). */
async function dcmtkFrame(data: Buffer, n: number, frames: number): Promise<Buffer> {
  const dir = await mkdtemp(path.join(tmp, "dcmtk-"));
  await writeFile(path.join(dir, "in.dcm"), data);
  execFileSync(dcm2pnm!, ["+Fa", path.join(dir, "in.dcm"), path.join(dir, "out")]);
  const pgm = await readFile(path.join(dir, frames > 1 ? `out.${n - 1}.pgm` : "out.0.pgm"));
  const head = /^P5\s+(\d+)\s+(\d+)\s+255\s/.exec(pgm.subarray(0, 64).toString("latin1"))!;
  return pgm.subarray(head[0].length);
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-opts-"));
  cloud = await startLocalCloud({
    dataset: { train: 12, test: 6, seed: 5, instanceBytes: 3000 },
    exportInstancesPerSecond: 2000,
  });
  cloud.healthcare.addDicomStore(MF_STORE, mf);
  train = cloud.healthcare.instances(SIIM_TRAIN_STORE) as readonly GeneratedInstance[];
  testSet = cloud.healthcare.instances(SIIM_TEST_STORE) as readonly GeneratedInstance[];
  if (dcm2pnm === undefined)
    process.stderr.write("\n!!! dcm2pnm (DCMTK) not installed: PNG pixels are checked against the source only\n");
});
after(async () => {
  await cloud.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("mimeType per store", () => {
  test("run with image/png lands S/SE/I.png (single-frame) and S/SE/I/N.png (multi-frame), valid PNGs of the right size and pixels", async () => {
    const file = await writeConfig("png", [
      { store: SIIM_TRAIN_STORE, prefix: "train", dest: "png/train", mimeType: "image/png" },
      { store: MF_STORE, prefix: "mf", dest: "png/mf", mimeType: "image/png" },
      { store: SIIM_TEST_STORE, prefix: "test", dest: "png/test" },
    ]);
    const plan = await hcexport(["plan", file, "--emulator", cloud.baseUrl]);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /export:train .*→ gs:\/\/opt-png\/train as image\/png/);
    const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(r.code, 0, r.stderr);
    const dest = path.join(tmp, "png");
    assert.deepEqual(await files(path.join(dest, "train")), train.map((i) => `${rel(i)}.png`).sort());
    assert.deepEqual(
      await files(path.join(dest, "mf")),
      mf.flatMap((i) => [1, 2, 3].map((n) => `${rel(i)}/${n}.png`)).sort(),
    );
    assert.deepEqual(await files(path.join(dest, "test")), testSet.map((i) => `${rel(i)}.dcm`).sort());
    for (const i of train) {
      const png = decodePng(await readFile(path.join(dest, "train", `${rel(i)}.png`)));
      assert.deepEqual([png.width, png.height, png.channels, png.depth], [i.side, i.side, 1, 8], rel(i));
      if (dcm2pnm !== undefined) assert.ok(Buffer.from(png.data).equals(await dcmtkFrame(i.data(), 1, 1)), rel(i));
    }
    for (const i of mf)
      for (const n of [1, 2, 3]) {
        const png = decodePng(await readFile(path.join(dest, "mf", rel(i), `${n}.png`)));
        assert.deepEqual([png.width, png.height, png.channels], [20, 24, 1]);
        assert.ok(Buffer.from(png.data).equals(i.framePixels(n)), `${rel(i)} frame ${n}`);
        if (dcm2pnm !== undefined) assert.ok(Buffer.from(png.data).equals(await dcmtkFrame(i.data(), n, 3)));
      }
    for (const i of testSet) assert.deepEqual(await readFile(path.join(dest, "test", `${rel(i)}.dcm`)), i.data());
    const ops = cloud.healthcare.operations().filter((o) => o.destination.startsWith("gs://opt-png/"));
    assert.deepEqual(ops.map((o) => [o.destination, o.mimeType, o.apiVersion]).sort(), [
      ["gs://opt-png/mf", "image/png", "v1"],
      ["gs://opt-png/test", undefined, "v1"],
      ["gs://opt-png/train", "image/png", "v1"],
    ]);
    const status = await hcexport(["status", file]);
    assert.match(status.stdout, /export train\s+done \S+ as image\/png/);
    assert.doesNotMatch(status.stdout, /export test\s+done \S+ as/);
  });

  test("a bad mimeType is exit 2 with the accepted forms, before any request (run and export)", async () => {
    const before = cloud.requests.count();
    const file = await writeConfig("badmime", [
      { store: SIIM_TRAIN_STORE, prefix: "train", dest: "badmime/train", mimeType: "image/gif" },
    ]);
    const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /exports\[0\]\.mimeType: "image\/gif" is not an export mimeType/);
    assert.match(r.stderr, /image\/jpeg; transfer-syntax=1\.2\.840\.10008\.1\.2\.4\.50/);
    assert.match(r.stderr, /image\/png/);
    const e = await hcexport([
      "export",
      SIIM_TRAIN_STORE,
      "gs://opt-x/y",
      "--mime-type",
      "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.90",
      "--emulator",
      cloud.baseUrl,
    ]);
    assert.equal(e.code, 2, e.stderr);
    assert.match(e.stderr, /--mime-type: image\/jpeg takes transfer-syntax 1\.2\.840\.10008\.1\.2\.4\.50/);
    assert.equal(cloud.requests.count(), before, "no request was made");
  });

  test("hcexport export --mime-type 'image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50' --wait writes S/SE/I.jpg", async () => {
    cloud.store.createBucket({ name: "opt-jpeg", projectNumber: SIIM.projectNumber });
    cloud.store.setPolicy("opt-jpeg", {
      version: 1,
      bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
    });
    const mime = "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50";
    const r = await hcexport([
      "export",
      SIIM_TRAIN_STORE,
      "gs://opt-jpeg/jpg",
      "--mime-type",
      mime,
      "--wait",
      "--json",
      "--emulator",
      cloud.baseUrl,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { operation: string; mimeType: string };
    assert.equal(out.mimeType, mime);
    assert.equal(cloud.healthcare.operation(out.operation)!.mimeType, mime);
    const names = cloud.store.listObjects("opt-jpeg", { prefix: "jpg/", limit: 1000 }).map((o) => o.name);
    assert.deepEqual(names.sort(), train.map((i) => `jpg/${rel(i)}.jpg`).sort());
    for (const i of train) {
      const jpg = cloud.store.readObject("opt-jpeg", `jpg/${rel(i)}.jpg`)!;
      assert.deepEqual([jpg[0], jpg[1]], [0xff, 0xd8], "SOI");
      // The baseline frame header (SOF0) gives the size: FFC0, length, precision, height, width.
      const sof = jpg.indexOf(Buffer.from([0xff, 0xc0]));
      assert.ok(sof > 0, "a baseline JPEG");
      assert.deepEqual([jpg.readUInt16BE(sof + 5), jpg.readUInt16BE(sof + 7)], [i.side, i.side]);
    }
  });
});

describe("study/series filter per store", () => {
  test("run exports exactly the listed studies/series over v1beta1, the filter file content-addressed in the bucket and reused", async () => {
    const studies = [...new Set(train.map((i) => i.studyUid))];
    assert.ok(studies.length >= 4, "enough studies to pick 2 of them");
    const picked = [studies[1]!, studies[3]!];
    const series = testSet[2]!;
    await mkdir(path.join(tmp, "flt"), { recursive: true });
    await writeFile(
      path.join(tmp, "flt", "test-filter.txt"),
      `\r\n/studies/${series.studyUid}/series/${series.seriesUid}\r\n`,
    );
    const file = await writeConfig("flt", [
      {
        store: SIIM_TRAIN_STORE,
        prefix: "train",
        dest: "flt/train",
        filter: [`/studies/${picked[1]}`, `/studies/${picked[0]}`],
      },
      { store: SIIM_TEST_STORE, prefix: "test", dest: "flt/test", filterFile: "flt/test-filter.txt" },
    ]);
    const posts = exportPosts().length;
    const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await files(path.join(tmp, "flt", "train")),
      train
        .filter((i) => picked.includes(i.studyUid))
        .map((i) => `${rel(i)}.dcm`)
        .sort(),
    );
    assert.deepEqual(
      await files(path.join(tmp, "flt", "test")),
      testSet
        .filter((i) => i.studyUid === series.studyUid && i.seriesUid === series.seriesUid)
        .map((i) => `${rel(i)}.dcm`)
        .sort(),
    );
    const sent = exportPosts().slice(posts);
    assert.deepEqual(sent.map((e) => e.path.split("/")[1]).sort(), ["v1beta1", "v1beta1"]);
    const ops = cloud.healthcare.operations().filter((o) => o.destination.startsWith("gs://opt-flt/"));
    assert.equal(ops.length, 2);
    const want = {
      train: `${[...picked]
        .sort()
        .map((s) => `/studies/${s}`)
        .join("\n")}\n`,
      test: `/studies/${series.studyUid}/series/${series.seriesUid}\n`,
    };
    const generations = new Map<string, string>();
    for (const op of ops) {
      const lane = op.destination.endsWith("/train") ? "train" : "test";
      const sha = createHash("sha256").update(want[lane]).digest("hex");
      assert.equal(op.filter, `gs://opt-flt/.hcexport/filters/${lane}-${sha}.txt`);
      assert.equal(op.apiVersion, "v1beta1");
      const name = op.filter!.slice("gs://opt-flt/".length);
      assert.equal(cloud.store.readObject("opt-flt", name)!.toString("utf8"), want[lane]);
      generations.set(name, cloud.store.getObject("opt-flt", name)!.generation);
    }
    const status = await hcexport(["status", file]);
    assert.match(
      status.stdout,
      /export train\s+done \S+ \(filter: 2 paths in gs:\/\/opt-flt\/\.hcexport\/filters\/train-/,
    );
    // A rerun that exports again reuses the filter objects (same bytes, same generation).
    const again = await hcexport(["run", file, "--emulator", cloud.baseUrl, "--fresh-export"]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stderr,
      /filter of .*: 2 paths in gs:\/\/opt-flt\/\.hcexport\/filters\/train-\w+\.txt \(already there\)/,
    );
    const reruns = cloud.healthcare.operations().filter((o) => o.destination.startsWith("gs://opt-flt/"));
    assert.equal(reruns.length, 4);
    for (const op of reruns.slice(2)) assert.ok(generations.has(op.filter!.slice("gs://opt-flt/".length)));
    for (const [name, gen] of generations) assert.equal(cloud.store.getObject("opt-flt", name)!.generation, gen);
  });

  test("hcexport export --filter-file uploads the list and exports only it over v1beta1", async () => {
    const one = train[5]!;
    await mkdir(path.join(tmp, "xf"), { recursive: true });
    await writeFile(path.join(tmp, "xf", "list.txt"), `/studies/${one.studyUid}/series/${one.seriesUid}\n`);
    cloud.store.createBucket({ name: "opt-xf", projectNumber: SIIM.projectNumber });
    cloud.store.setPolicy("opt-xf", {
      version: 1,
      bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
    });
    const posts = exportPosts().length;
    const r = await hcexport([
      "export",
      SIIM_TRAIN_STORE,
      "gs://opt-xf/sel",
      "--filter-file",
      path.join(tmp, "xf", "list.txt"),
      "--mime-type",
      "image/png",
      "--wait",
      "--json",
      "--emulator",
      cloud.baseUrl,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const content = `/studies/${one.studyUid}/series/${one.seriesUid}\n`;
    const sha = createHash("sha256").update(content).digest("hex");
    const out = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { operation: string; filter: string };
    assert.equal(out.filter, `gs://opt-xf/.hcexport/filters/sel-${sha}.txt`);
    assert.equal(cloud.store.readObject("opt-xf", `.hcexport/filters/sel-${sha}.txt`)!.toString(), content);
    assert.deepEqual(
      exportPosts()
        .slice(posts)
        .map((e) => e.path.split("/")[1]),
      ["v1beta1"],
    );
    const names = cloud.store.listObjects("opt-xf", { prefix: "sel/", limit: 1000 }).map((o) => o.name);
    assert.deepEqual(
      names.sort(),
      train
        .filter((i) => i.studyUid === one.studyUid && i.seriesUid === one.seriesUid)
        .map((i) => `sel/${rel(i)}.png`)
        .sort(),
    );
    const bad = await hcexport(["export", SIIM_TRAIN_STORE, "gs://opt-xf/b", "--filter-file", "/nonexistent/f.txt"]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--filter-file: cannot read \/nonexistent\/f\.txt/);
  });

  test("a bad UID, a bad filter file line, or filter with filterFile is exit 2 before any request", async () => {
    const before = cloud.requests.count();
    await mkdir(path.join(tmp, "badf"), { recursive: true });
    await writeFile(path.join(tmp, "badf", "f.txt"), "/studies/1.2.3\n/studies/1.2.x4\n");
    const cases: Array<[unknown, RegExp]> = [
      [
        { filter: ["/studies/1.2.abc"] },
        /exports\[0\]\.filter\[0\]: "1\.2\.abc" in \/studies\/1\.2\.abc is not a DICOM UID/,
      ],
      [{ filter: [`/studies/${"1".repeat(65)}`] }, /is not a DICOM UID \(digits and dots, at most 64\)/],
      [{ filter: ["/series/1.2"] }, /is not \/studies\/STUDY_UID or \/studies\/STUDY_UID\/series\/SERIES_UID/],
      [{ filterFile: "badf/f.txt" }, /exports\[0\]\.filterFile: badf\/f\.txt has 1 bad line:\n {2}2: "1\.2\.x4"/],
      [{ filter: ["/studies/1.2"], filterFile: "badf/f.txt" }, /give filter or filterFile, not both/],
    ];
    for (const [extra, message] of cases) {
      const file = await writeConfig("badf", [
        { store: SIIM_TRAIN_STORE, prefix: "train", dest: "badf/train", ...(extra as object) },
      ]);
      const r = await hcexport(["run", file, "--emulator", cloud.baseUrl]);
      assert.equal(r.code, 2, `${JSON.stringify(extra)}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.equal(cloud.requests.count(), before, "no request was made");
  });
});
