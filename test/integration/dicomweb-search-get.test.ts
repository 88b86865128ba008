import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { SIIM, SIIM_DATASET_PATH, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import type { GeneratedInstance } from "../../src/emulator/dataset/instances.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { listFiles, requireBuiltCli, spawnCli } from "../support/chaos.ts";
import { cliIn } from "../support/cli.ts";
import { multiFrameInstance } from "../support/multiframe.ts";
import { which } from "../support/peers.ts";

/**
 * `dicomweb search`, `pull` subsets and `get` against the local cloud, through the CLI (the built
 * one for at least one test per command), checked against the store's own bytes and the requests
 * the server received.
 */
const TRAIN = 60;
const dcmdjpeg = which("dcmdjpeg");
const MF_STORE = `${SIIM_DATASET_PATH}/dicomStores/multiframe`;
let cloud: LocalCloud;
let tmp: string;
let instances: readonly GeneratedInstance[];
const mf = [0, 1].map((k) => multiFrameInstance(k, { frames: 3, rows: 24, columns: 24 }));

const cli = (argv: string[]) => cliIn(["--emulator", cloud.baseUrl, ...argv], { cwd: tmp });
const built = (argv: string[]) => spawnCli(requireBuiltCli(), ["--emulator", cloud.baseUrl, ...argv], { cwd: tmp });
const rel = (i: { studyUid: string; seriesUid: string; sopInstanceUid: string }) =>
  `${i.studyUid}/${i.seriesUid}/${i.sopInstanceUid}`;
const dicomFiles = async (dir: string) => (await listFiles(dir)).filter((f) => !f.startsWith(".hcexport/")).sort();
const qidoRequests = (suffix: string) =>
  cloud.requests.entries.filter((e) => e.method === "GET" && e.path.endsWith(`/dicomWeb/${suffix}`));
const web = (store: string, p: string, accept?: string) =>
  fetch(`${cloud.baseUrl}/v1/${store}/dicomWeb/${p}`, accept === undefined ? {} : { headers: { accept } });

before(async () => {
  cloud = await startLocalCloud({
    dataset: { train: TRAIN, test: 4, seed: 23, instanceBytes: 3000 },
    exportInstancesPerSecond: 10_000,
  });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-dw-get-"));
  instances = cloud.healthcare.instances(SIIM_TRAIN_STORE) as readonly GeneratedInstance[];
  cloud.healthcare.addDicomStore(MF_STORE, mf);
});
after(async () => {
  await cloud.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("dicomweb search", () => {
  test("built CLI, instance level, pages of 7: every instance once, paged until an empty page", async () => {
    cloud.requests.entries.length = 0;
    const r = await built([
      "dicomweb",
      "search",
      SIIM_TRAIN_STORE,
      "--level",
      "instances",
      "--page-size",
      "7",
      "--format",
      "ndjson",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, { Value: string[] }>);
    assert.deepEqual(rows.map((x) => x["00080018"]!.Value[0]).sort(), instances.map((i) => i.sopInstanceUid).sort());
    const pages = qidoRequests("instances");
    // 8 full pages, a short one (4 rows) that is not trusted to be the last, and the empty one.
    assert.equal(pages.length, Math.ceil(TRAIN / 7) + 1, pages.map((p) => p.query).join("\n"));
    assert.ok(pages.every((p) => new URLSearchParams(p.query).get("limit") === "7"));
  });

  test("--limit caps the results and the paging", async () => {
    cloud.requests.entries.length = 0;
    const r = await cli([
      "dicomweb",
      "search",
      SIIM_TRAIN_STORE,
      "--page-size",
      "4",
      "--limit",
      "10",
      "--format",
      "json",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, 10);
    assert.equal(qidoRequests("studies").length, 3, "pages of 4, 4, 4: the third fills the limit");
  });

  test("filters match as the server does: exact, wildcard, date range, UID list, fuzzy names", async () => {
    const one = instances[5]!;
    const cases: Array<[string[], (i: GeneratedInstance) => boolean]> = [
      [["--filter", "PatientSex=F"], (i) => i.patientSex === "F"],
      [["--filter", `00100020=${one.patientId}`], (i) => i.patientId === one.patientId],
      [
        ["--filter", `PatientID=${one.patientId.slice(0, 3)}*`],
        (i) => i.patientId.startsWith(one.patientId.slice(0, 3)),
      ],
      [["--filter", "StudyDate=19000101-19011231"], () => true],
      [["--filter", "StudyDate=20190101-20190630"], () => false],
      [
        ["--filter", `StudyInstanceUID=${instances[1]!.studyUid},${instances[2]!.studyUid}`],
        (i) => i === instances[1] || i === instances[2],
      ],
      [
        ["--filter", `PatientName=${one.patientId.slice(0, 4).toUpperCase()}`, "--fuzzy"],
        (i) => i.patientId.startsWith(one.patientId.slice(0, 4)),
      ],
      [["--filter", `PatientName=${one.patientId.slice(0, 4).toUpperCase()}`], () => false],
    ];
    for (const [args, want] of cases) {
      const r = await cli([
        "dicomweb",
        "search",
        SIIM_TRAIN_STORE,
        "--level",
        "instances",
        "--page-size",
        "9",
        "--format",
        "json",
        ...args,
      ]);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      const got = (JSON.parse(r.stdout) as Array<Record<string, { Value: string[] }>>)
        .map((x) => x["00080018"]!.Value[0])
        .sort();
      assert.deepEqual(
        got,
        instances
          .filter(want)
          .map((i) => i.sopInstanceUid)
          .sort(),
        args.join(" "),
      );
    }
    const bad = await cli(["dicomweb", "search", SIIM_TRAIN_STORE, "--filter", "NoSuchKeyword=1"]);
    assert.equal(bad.code, 2, bad.stderr);
  });

  test("built CLI --format csv: exactly the RFC 4180 bytes", async () => {
    const one = instances[7]!;
    const r = await built([
      "dicomweb",
      "search",
      SIIM_TRAIN_STORE,
      "--filter",
      `PatientID=${one.patientId}`,
      "--include",
      "PatientAge",
      "--format",
      "csv",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const age = `${String(one.patientAge).padStart(3, "0")}Y`;
    assert.equal(
      r.stdout,
      "StudyDate,StudyTime,AccessionNumber,ReferringPhysicianName,PatientName,PatientID,PatientBirthDate,PatientSex,PatientAge,StudyInstanceUID,StudyID,NumberOfStudyRelatedSeries,NumberOfStudyRelatedInstances\r\n" +
        `19010101,000000.00,,,${one.patientId},${one.patientId},,${one.patientSex},${age},${one.studyUid},,1,1\r\n`,
    );
  });

  test("table output fits the terminal width", async () => {
    const r = await cliIn(["--emulator", cloud.baseUrl, "dicomweb", "search", SIIM_TRAIN_STORE, "--limit", "5"], {
      cwd: tmp,
      env: { COLUMNS: "72" },
    });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 1 + 5 + 1, r.stdout);
    assert.ok(
      lines.every((l) => [...l].length <= 72),
      r.stdout,
    );
    assert.match(lines[0]!, /^StudyDate/);
    assert.ok(r.stdout.includes("…"), "long cells are cut with …");
  });
});

describe("dicomweb pull subsets", () => {
  test("built CLI --study twice: exactly those studies, byte-identical; a rerun fetches nothing", async () => {
    const dest = path.join(tmp, "pull-study");
    const [a, b] = [instances[3]!, instances[40]!];
    const r = await built([
      "dicomweb",
      "pull",
      SIIM_TRAIN_STORE,
      dest,
      "--study",
      a.studyUid,
      "--study",
      b.studyUid,
      "--page-size",
      "2",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await dicomFiles(dest), [`${rel(a)}.dcm`, `${rel(b)}.dcm`].sort());
    for (const i of [a, b]) assert.deepEqual(await readFile(path.join(dest, `${rel(i)}.dcm`)), i.data());
    const again = await cli([
      "--json",
      "dicomweb",
      "pull",
      SIIM_TRAIN_STORE,
      dest,
      "--study",
      a.studyUid,
      "--study",
      b.studyUid,
    ]);
    const summary = again.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; summary?: { downloaded: number; skipped: number } })
      .find((e) => e.kind === "result")!.summary!;
    assert.deepEqual([summary.downloaded, summary.skipped], [0, 2]);
  });

  test("--uids FILE (UIDs, series and instance paths, comments) and --filter", async () => {
    const dest = path.join(tmp, "pull-uids");
    const [a, b, c] = [instances[0]!, instances[11]!, instances[22]!];
    const file = path.join(tmp, "uids.txt");
    await writeFile(
      file,
      `# wanted\n${a.studyUid}\n\nstudies/${b.studyUid}/series/${b.seriesUid}  # a series\n/studies/${c.studyUid}/series/${c.seriesUid}/instances/${c.sopInstanceUid}\n`,
    );
    const r = await cli(["dicomweb", "pull", SIIM_TRAIN_STORE, dest, "--uids", file]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await dicomFiles(dest), [a, b, c].map((i) => `${rel(i)}.dcm`).sort());

    const males = path.join(tmp, "pull-filter");
    const m = await cli(["dicomweb", "pull", SIIM_TRAIN_STORE, males, "--filter", "PatientSex=M", "--page-size", "5"]);
    assert.equal(m.code, 0, m.stderr);
    assert.deepEqual(
      await dicomFiles(males),
      instances
        .filter((i) => i.patientSex === "M")
        .map((i) => `${rel(i)}.dcm`)
        .sort(),
    );

    const missing = await cli([
      "dicomweb",
      "pull",
      SIIM_TRAIN_STORE,
      path.join(tmp, "pull-missing"),
      "--study",
      "1.2.3.4",
    ]);
    assert.equal(missing.code, 5, missing.stderr);
    assert.match(missing.stderr, /studies\/1\.2\.3\.4.*lists no instances/);
    const unsafe = await cli(["dicomweb", "pull", SIIM_TRAIN_STORE, path.join(tmp, "pull-bad"), "--study", "../x"]);
    assert.equal(unsafe.code, 2, unsafe.stderr);
  });
});

describe("dicomweb get", () => {
  test("built CLI: a study, a series and an instance, each file byte-identical; --metadata as served", async () => {
    const dest = path.join(tmp, "get");
    const [a, b, c] = [instances[1]!, instances[2]!, instances[3]!];
    for (const [target, i] of [
      [`studies/${a.studyUid}`, a],
      [`studies/${b.studyUid}/series/${b.seriesUid}`, b],
      [`studies/${c.studyUid}/series/${c.seriesUid}/instances/${c.sopInstanceUid}`, c],
    ] as const) {
      const r = await built(["dicomweb", "get", SIIM_TRAIN_STORE, target, dest, "--metadata"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await readFile(path.join(dest, `${rel(i)}.dcm`)), i.data());
      const served = Buffer.from(
        await (await web(SIIM_TRAIN_STORE, `${target}/metadata`, "application/dicom+json")).arrayBuffer(),
      );
      const metaFile = target.includes("/instances/")
        ? `${rel(i)}/metadata.json`
        : target.includes("/series/")
          ? `${i.studyUid}/${i.seriesUid}/metadata.json`
          : `${i.studyUid}/metadata.json`;
      assert.deepEqual(await readFile(path.join(dest, metaFile)), served);
    }
    assert.equal((await dicomFiles(dest)).length, 6);
  });

  test("frames raw (a list) and rendered PNG/JPEG of a multi-frame instance: the stored pixels, decoded independently", async () => {
    const dest = path.join(tmp, "get-frames");
    const i = mf[1]!;
    const base = `studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopInstanceUid}`;
    const raw = await built(["dicomweb", "get", MF_STORE, `${base}/frames/3,1`, dest]);
    assert.equal(raw.code, 0, raw.stderr);
    for (const n of [1, 3])
      assert.deepEqual(await readFile(path.join(dest, rel(i), "frames", `${n}.raw`)), i.framePixels(n));
    assert.deepEqual(await dicomFiles(dest), [`${rel(i)}/frames/1.raw`, `${rel(i)}/frames/3.raw`]);

    const png = await cli(["dicomweb", "get", MF_STORE, `${base}/frames/2`, dest, "--rendered", "png"]);
    assert.equal(png.code, 0, png.stderr);
    const pngBytes = await readFile(path.join(dest, rel(i), "frames", "2.png"));
    assert.deepEqual(
      pngBytes,
      Buffer.from(await (await web(MF_STORE, `${base}/frames/2/rendered`, "image/png")).arrayBuffer()),
    );
    const decoded = PNG.sync.read(pngBytes);
    assert.deepEqual([decoded.width, decoded.height], [24, 24]);
    // 8-bit unsigned without a window: rendering is the identity, so every gray value is the stored pixel.
    const gray = Buffer.alloc(24 * 24);
    for (let p = 0; p < gray.length; p++) gray[p] = decoded.data[p * 4]!;
    assert.deepEqual(gray, i.framePixels(2));

    const jpg = await cli(["dicomweb", "get", MF_STORE, base, dest, "--rendered", "jpeg"]);
    assert.equal(jpg.code, 0, jpg.stderr);
    const j = jpeg.decode(await readFile(path.join(dest, `${rel(i)}.jpg`)));
    assert.deepEqual([j.width, j.height], [24, 24]);

    const beyond = await cli(["dicomweb", "get", MF_STORE, `${base}/frames/4`, dest]);
    assert.equal(beyond.code, 5, beyond.stderr);
    assert.match(beyond.stderr, /3 frame/);
  });

  test("a rendered series (one request per instance) and a get under 30 % 503s: retried, the same files", async () => {
    const dest = path.join(tmp, "get-rendered-series");
    const i = mf[0]!;
    const r = await cli([
      "dicomweb",
      "get",
      MF_STORE,
      `studies/${i.studyUid}/series/${i.seriesUid}`,
      dest,
      "--rendered",
      "png",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await dicomFiles(dest), [`${rel(i)}.png`]);
    assert.deepEqual(PNG.sync.read(await readFile(path.join(dest, `${rel(i)}.png`))).data.length, 24 * 24 * 4);

    cloud.faults = { ...noFaults, rate503: 0.3, seed: 5 };
    const before503 = cloud.requests.countStatus(503);
    try {
      const flaky = path.join(tmp, "get-flaky");
      const base = `studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopInstanceUid}`;
      for (const target of [`studies/${instances[9]!.studyUid}`, `${base}/frames/1,2,3`]) {
        const g = await cli([
          "dicomweb",
          "get",
          target.includes("frames") ? MF_STORE : SIIM_TRAIN_STORE,
          target,
          flaky,
        ]);
        assert.equal(g.code, 0, g.stderr);
      }
      assert.deepEqual(await readFile(path.join(flaky, `${rel(instances[9]!)}.dcm`)), instances[9]!.data());
      for (const n of [1, 2, 3])
        assert.deepEqual(await readFile(path.join(flaky, rel(i), "frames", `${n}.raw`)), i.framePixels(n));
      assert.ok(cloud.requests.countStatus(503) > before503, "503s were served and retried");
    } finally {
      cloud.faults = noFaults;
    }
  });

  test("the local cloud answers 406 for Accept types it does not offer", async () => {
    const i = mf[0]!;
    const base = `studies/${i.studyUid}/series/${i.seriesUid}/instances/${i.sopInstanceUid}`;
    assert.equal((await web(MF_STORE, `${base}/frames/1`, 'multipart/related; type="image/jp2"')).status, 406);
    assert.equal((await web(MF_STORE, `${base}/rendered`, "image/gif")).status, 406);
    assert.equal(
      (await web(MF_STORE, `${base}/frames/1/rendered`, "image/png")).headers.get("content-type"),
      "image/png",
    );
    const frames = await web(
      MF_STORE,
      `${base}/frames/1,2`,
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    );
    assert.equal(frames.status, 200);
    assert.match(
      frames.headers.get("content-type")!,
      /^multipart\/related; type="application\/octet-stream"; boundary=/,
    );
    assert.equal((await web(MF_STORE, `${base}/frames/0`)).status, 400);
    // Transcoding on retrieve: JPEG Baseline asked, a JPEG Baseline Part 10 file served (as the export writes it).
    const jpegDcm = await web(MF_STORE, base, "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50");
    assert.equal(jpegDcm.status, 200);
    assert.equal(jpegDcm.headers.get("content-type"), "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50");
    const dicomParser = (await import("dicom-parser")).default;
    const ds = dicomParser.parseDicom(new Uint8Array(await jpegDcm.arrayBuffer()));
    assert.equal(ds.string("x00020010"), "1.2.840.10008.1.2.4.50");
    assert.equal(ds.elements["x7fe00010"]!.fragments?.length, 3);
    assert.equal((await web(MF_STORE, base, "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90")).status, 406);
    assert.equal(
      (await web(MF_STORE, `studies/${i.studyUid}/series/${i.seriesUid}/rendered`, "image/png")).status,
      501,
    );
  });
});

describe("rendered and transcoded exports", () => {
  const bucket = "rendered-exports";
  before(() => {
    cloud.store.createBucket({ name: bucket, projectNumber: "1" });
    cloud.store.setPolicy(bucket, {
      version: 1,
      bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
    });
  });
  async function exportAs(store: string, prefix: string, mimeType: string): Promise<string[]> {
    const res = await fetch(`${cloud.baseUrl}/v1/${store}:export`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ gcsDestination: { uriPrefix: `gs://${bucket}/${prefix}`, mimeType } }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    const { name } = (await res.json()) as { name: string };
    for (;;) {
      const op = (await (await fetch(`${cloud.baseUrl}/v1/${name}`)).json()) as { done?: boolean; error?: unknown };
      if (op.done === true) {
        assert.equal(op.error, undefined, JSON.stringify(op.error));
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return cloud.store
      .listObjects(bucket, { prefix: `${prefix}/`, limit: 1000 })
      .map((o) => o.name.slice(prefix.length + 1));
  }
  const obj = (name: string) => cloud.store.readObject(bucket, name)!;

  test("image/png: a frame level for multi-frame instances (PREFIX/S/SE/I/N.png), pixels as stored", async () => {
    const names = await exportAs(MF_STORE, "png", "image/png");
    assert.deepEqual(names.sort(), mf.flatMap((i) => [1, 2, 3].map((n) => `${rel(i)}/${n}.png`)).sort());
    const d = PNG.sync.read(obj(`png/${rel(mf[0]!)}/2.png`));
    assert.deepEqual([d.width, d.height], [24, 24]);
    assert.equal(d.data[4 * 5], mf[0]!.framePixels(2)[5]);
  });

  test("image/jpeg and application/octet-stream on single-frame instances: PREFIX/S/SE/I.jpg and PREFIX/S/SE/I", async () => {
    const jpgs = await exportAs(SIIM_TRAIN_STORE, "jpg", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50");
    assert.deepEqual(jpgs.sort(), instances.map((i) => `${rel(i)}.jpg`).sort());
    const j = jpeg.decode(obj(`jpg/${rel(instances[0]!)}.jpg`));
    assert.deepEqual([j.width, j.height], [instances[0]!.side, instances[0]!.side]);
    const raws = await exportAs(SIIM_TRAIN_STORE, "raw", "application/octet-stream");
    assert.deepEqual(raws.sort(), instances.map((i) => rel(i)).sort());
    const data = instances[0]!.data();
    const px = instances[0]!.side ** 2;
    assert.deepEqual(
      obj(`raw/${rel(instances[0]!)}`),
      data.subarray(data.length - px - (px % 2), data.length - (px % 2)),
    );
  });

  test("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50: JPEG Baseline Part 10 files; unsupported values 400/501", async () => {
    const names = await exportAs(MF_STORE, "jpegdcm", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50");
    assert.deepEqual(names.sort(), mf.map((i) => `${rel(i)}.dcm`).sort());
    const file = obj(`jpegdcm/${rel(mf[0]!)}.dcm`);
    const dicomParser = (await import("dicom-parser")).default;
    const ds = dicomParser.parseDicom(new Uint8Array(file));
    assert.equal(ds.string("x00020010"), "1.2.840.10008.1.2.4.50");
    assert.equal(ds.string("x00080018"), mf[0]!.sopInstanceUid);
    const el = ds.elements["x7fe00010"]!;
    assert.equal(el.fragments?.length, 3, "one fragment per frame");
    const frame = dicomParser.readEncapsulatedImageFrame(ds, el, 1);
    const d = jpeg.decode(Buffer.from(frame));
    assert.deepEqual([d.width, d.height], [24, 24]);
    if (dcmdjpeg !== undefined) {
      // DCMTK (an independent codec) decompresses the file: the JPEG Baseline encoding is a valid one.
      const out = path.join(tmp, "decompressed.dcm");
      await writeFile(path.join(tmp, "compressed.dcm"), file);
      execFileSync(dcmdjpeg, [path.join(tmp, "compressed.dcm"), out]);
      const plain = dicomParser.parseDicom(new Uint8Array(await readFile(out)));
      assert.equal(plain.string("x00020010"), "1.2.840.10008.1.2.1");
      assert.equal(plain.elements["x7fe00010"]!.length, 3 * 24 * 24 * 3);
    } else
      process.stderr.write(
        "\n!!! dcmdjpeg (DCMTK) not installed: the JPEG Baseline file is not checked by an independent decoder\n",
      );
    const stored = await exportAs(SIIM_TRAIN_STORE, "asis", "application/dicom; transfer-syntax=*");
    assert.equal(stored.length, TRAIN);
    assert.deepEqual(obj(`asis/${rel(instances[4]!)}.dcm`), instances[4]!.data());
    for (const [mimeType, status] of [
      ["image/gif", 400],
      ["application/dicom; transfer-syntax=1.2.3", 400],
      ["application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90", 501],
    ] as const) {
      const res = await fetch(`${cloud.baseUrl}/v1/${SIIM_TRAIN_STORE}:export`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ gcsDestination: { uriPrefix: `gs://${bucket}/x`, mimeType } }),
      });
      assert.equal(res.status, status, mimeType);
    }
  });
});
