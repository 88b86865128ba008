import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { inspectPart10 } from "../../src/dicomweb/part10.ts";
import { writePart10 } from "../../src/emulator/dataset/dicom-writer.ts";
import { SOP_CLASS_SECONDARY_CAPTURE } from "../../src/emulator/dataset/instances.ts";
import { cliIn, type CliResult } from "../support/cli.ts";
import { PNG } from "pngjs";
import { peer } from "../support/peers.ts";

/**
 * `hcexport dicomweb pull` against a real DICOMweb server: Orthanc with its DICOMweb plugin, on
 * loopback ports with its own config and storage, loaded with generated instances in several
 * studies and series. Every pulled file must be byte-identical to Orthanc's `/instances/{id}/file`.
 */
const orthanc = peer("Orthanc");
const PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
const STUDIES = 8;
const SERIES = 2;
const PER_SERIES = 20; // 8 × 2 × 20 = 320 instances
const USER = "hcx";
const PASSWORD = "orthanc-test-pw";

let tmp: string;
let proc: ChildProcess | undefined;
let http: string;
let log = "";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const auth = { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString("base64")}` };

function makeInstance(study: number, series: number, n: number): Buffer {
  const root = "1.2.826.0.1.3680043.10.1511.9";
  const studyUid = `${root}.1.${study + 1}`;
  const seriesUid = `${root}.2.${study + 1}.${series + 1}`;
  const sopUid = `${root}.3.${study + 1}.${series + 1}.${n + 1}`;
  const side = 48 + ((study * 7 + n) % 16);
  return writePart10(
    SOP_CLASS_SECONDARY_CAPTURE,
    sopUid,
    [
      { tag: 0x00080016, vr: "UI", value: SOP_CLASS_SECONDARY_CAPTURE },
      { tag: 0x00080018, vr: "UI", value: sopUid },
      { tag: 0x00080060, vr: "CS", value: "OT" },
      { tag: 0x00100010, vr: "PN", value: `Patient^${study + 1}` },
      { tag: 0x00100020, vr: "LO", value: `P${study + 1}` },
      { tag: 0x0020000d, vr: "UI", value: studyUid },
      { tag: 0x0020000e, vr: "UI", value: seriesUid },
      { tag: 0x00200011, vr: "IS", value: String(series + 1) },
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
    { length: side * side, fill: (t) => t.fill((study * 31 + series * 7 + n) & 0xff) },
  );
}

async function api(pathname: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${http}${pathname}`, {
    ...init,
    headers: { ...auth, ...(init.headers as Record<string, string> | undefined) },
  });
}

before(async () => {
  if (orthanc.skip) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-orthanc-"));
  const [httpPort, dicomPort] = [await freePort(), await freePort()];
  http = `http://127.0.0.1:${httpPort}`;
  const config = {
    Name: "hcexport-interop",
    StorageDirectory: path.join(tmp, "db"),
    IndexDirectory: path.join(tmp, "db"),
    HttpPort: httpPort,
    DicomPort: dicomPort,
    DicomServerEnabled: false,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [USER]: PASSWORD },
    Plugins: [PLUGIN],
    DicomWeb: {
      Enable: true,
      Root: "/dicom-web/",
      EnableWado: false,
      StudiesMetadata: "MainDicomTags",
      SeriesMetadata: "MainDicomTags",
    },
    StableAge: 1,
    HttpThreadsCount: 16,
  };
  const configFile = path.join(tmp, "orthanc.json");
  await writeFile(configFile, JSON.stringify(config, null, 2));
  proc = spawn(orthanc.path!, [configFile], { stdio: ["ignore", "pipe", "pipe"] });
  proc.stdout!.on("data", (d: Buffer) => (log += d.toString()));
  proc.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await api("/system").then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`Orthanc did not start:\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const plugins = (await (await api("/plugins")).json()) as string[];
  assert.ok(plugins.includes("dicom-web"), `the DICOMweb plugin is loaded (${plugins.join(", ")})`);
  // Load the instances over Orthanc's REST API.
  const uploads: Promise<void>[] = [];
  for (let st = 0; st < STUDIES; st++) {
    for (let se = 0; se < SERIES; se++) {
      for (let n = 0; n < PER_SERIES; n++) {
        uploads.push(
          api("/instances", {
            method: "POST",
            body: makeInstance(st, se, n),
            headers: { "content-type": "application/dicom" },
          }).then(async (r) => {
            assert.equal(r.status, 200, await r.text());
          }),
        );
        if (uploads.length >= 16) await Promise.all(uploads.splice(0));
      }
    }
  }
  await Promise.all(uploads);
});

after(async () => {
  if (proc !== undefined && proc.exitCode === null) {
    proc.kill("SIGTERM");
    await new Promise((r) => proc!.once("exit", r));
  }
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

/** Orthanc's own bytes of every instance, by its path in the seed's layout. */
async function orthancFiles(): Promise<Map<string, Buffer>> {
  const ids = (await (await api("/instances")).json()) as string[];
  const out = new Map<string, Buffer>();
  for (const id of ids) {
    const bytes = Buffer.from(await (await api(`/instances/${id}/file`)).arrayBuffer());
    const r = inspectPart10(bytes);
    assert.ok(r.ok, `Orthanc's file for ${id} is whole`);
    out.set(`${r.studyInstanceUid}/${r.seriesInstanceUid}/${r.sopInstanceUid}.dcm`, bytes);
  }
  return out;
}

async function pulledFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out.filter((f) => !f.startsWith(".hcexport/")).sort();
}

function cli(argv: string[], env: Record<string, string>): Promise<CliResult> {
  return cliIn(argv, { cwd: tmp, env });
}

describe("dicomweb pull against Orthanc + DICOMweb plugin", { skip: orthanc.skip }, () => {
  let expected: Map<string, Buffer>;
  before(async () => {
    expected = await orthancFiles();
    assert.equal(expected.size, STUDIES * SERIES * PER_SERIES);
  });

  for (const mode of ["instance", "series", "study"] as const) {
    test(`${mode} retrieval, QIDO pages of 25: all ${STUDIES * SERIES * PER_SERIES} instances, each byte-identical to /instances/{id}/file`, async () => {
      const dest = path.join(tmp, `pull-${mode}`);
      const r = await cli(
        [
          "--json",
          "dicomweb",
          "pull",
          `${http}/dicom-web/`,
          dest,
          "--page-size",
          "25",
          "--mode",
          mode,
          "--concurrency",
          "8",
        ],
        { HCEXPORT_DICOMWEB_USER: USER, HCEXPORT_DICOMWEB_PASSWORD: PASSWORD },
      );
      assert.equal(r.code, 0, r.stderr + r.stdout.slice(-2000));
      const events = r.stdout
        .trim()
        .split("\n")
        .map(
          (l) =>
            JSON.parse(l) as {
              kind: string;
              path?: string;
              rows?: number;
              summary?: { downloaded: number; listed: number };
            },
        );
      const instancePages = events.filter((e) => e.kind === "dicomweb.search.page" && e.path === "instances");
      assert.ok(instancePages.length > 10, `the listing took ${instancePages.length} QIDO pages`);
      assert.equal(events.find((e) => e.kind === "result")?.summary?.downloaded, expected.size);
      assert.deepEqual(await pulledFiles(dest), [...expected.keys()].sort());
      for (const [rel, bytes] of expected) assert.deepEqual(await readFile(path.join(dest, rel)), bytes, rel);
      const again = await cli(["--json", "dicomweb", "pull", `${http}/dicom-web`, dest, "--mode", mode], {
        HCEXPORT_DICOMWEB_USER: USER,
        HCEXPORT_DICOMWEB_PASSWORD: PASSWORD,
      });
      assert.equal(again.code, 0, again.stderr);
      const summary = again.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { kind: string; summary?: { downloaded: number; skipped: number } })
        .find((e) => e.kind === "result")?.summary;
      assert.deepEqual([summary?.downloaded, summary?.skipped], [0, expected.size], "a rerun retrieves nothing");
    });
  }

  test("wrong credentials: a clear 401 error, nothing written, the password not echoed", async () => {
    const dest = path.join(tmp, "pull-unauthorized");
    const r = await cli(["dicomweb", "pull", `${http}/dicom-web`, dest], {
      HCEXPORT_DICOMWEB_USER: USER,
      HCEXPORT_DICOMWEB_PASSWORD: "wrong-pw-123",
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /401/);
    assert.ok(!(r.stdout + r.stderr).includes("wrong-pw-123"));
  });
});

describe("dicomweb search, pull --study and get against Orthanc", { skip: orthanc.skip }, () => {
  const env = { HCEXPORT_DICOMWEB_USER: USER, HCEXPORT_DICOMWEB_PASSWORD: PASSWORD };
  const uid = (study: number, series?: number, n?: number) =>
    `1.2.826.0.1.3680043.10.1511.9.${series === undefined ? "1" : n === undefined ? "2" : "3"}.${study + 1}${series === undefined ? "" : `.${series + 1}`}${n === undefined ? "" : `.${n + 1}`}`;
  let expected: Map<string, Buffer>;
  before(async () => {
    expected = await orthancFiles();
  });

  test("search: every instance across pages of 25; study filters matched as Orthanc matches them", async () => {
    const r = await cli(
      ["dicomweb", "search", `${http}/dicom-web`, "--level", "instances", "--page-size", "25", "--format", "ndjson"],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const sops = r.stdout
      .trimEnd()
      .split("\n")
      .map((l) => (JSON.parse(l) as Record<string, { Value: string[] }>)["00080018"]!.Value[0]!);
    assert.deepEqual(sops.sort(), [...expected.keys()].map((k) => path.basename(k, ".dcm")).sort());
    const one = await cli(
      ["dicomweb", "search", `${http}/dicom-web`, "--filter", "PatientID=P3", "--format", "json"],
      env,
    );
    assert.equal(one.code, 0, one.stderr);
    const rows = JSON.parse(one.stdout) as Array<Record<string, { Value: string[] }>>;
    assert.deepEqual(
      rows.map((x) => x["0020000D"]!.Value[0]),
      [uid(2)],
    );
    const all = await cli(
      [
        "dicomweb",
        "search",
        `${http}/dicom-web`,
        "--filter",
        "PatientID=P*",
        "--page-size",
        "3",
        "--format",
        "csv",
        "--include",
        "PatientID",
      ],
      env,
    );
    assert.equal(all.code, 0, all.stderr);
    const lines = all.stdout.split("\r\n").filter((l) => l !== "");
    assert.equal(lines.length, 1 + STUDIES);
  });

  test("pull --study: exactly that study, byte-identical to Orthanc's /instances/{id}/file", async () => {
    const dest = path.join(tmp, "orthanc-pull-study");
    const r = await cli(["dicomweb", "pull", `${http}/dicom-web`, dest, "--study", uid(4), "--page-size", "7"], env);
    assert.equal(r.code, 0, r.stderr);
    const want = [...expected.keys()].filter((k) => k.startsWith(`${uid(4)}/`)).sort();
    assert.equal(want.length, SERIES * PER_SERIES);
    assert.deepEqual(await pulledFiles(dest), want);
    for (const rel of want) assert.deepEqual(await readFile(path.join(dest, rel)), expected.get(rel), rel);
  });

  test("get: a series (each part its own file) and a frame, raw bytes equal to Orthanc's /instances/{id}/frames/0/raw", async () => {
    const dest = path.join(tmp, "orthanc-get");
    const series = await cli(
      ["dicomweb", "get", `${http}/dicom-web`, `studies/${uid(1)}/series/${uid(1, 1)}`, dest, "--metadata"],
      env,
    );
    assert.equal(series.code, 0, series.stderr);
    const want = [...expected.keys()].filter((k) => k.startsWith(`${uid(1)}/${uid(1, 1)}/`)).sort();
    const got = await pulledFiles(dest);
    assert.deepEqual(
      got.filter((f) => f.endsWith(".dcm")),
      want,
    );
    for (const rel of want) assert.deepEqual(await readFile(path.join(dest, rel)), expected.get(rel), rel);
    assert.ok(got.includes(`${uid(1)}/${uid(1, 1)}/metadata.json`));

    const [st, se, n] = [5, 0, 7];
    const target = `studies/${uid(st)}/series/${uid(st, se)}/instances/${uid(st, se, n)}/frames/1`;
    const frame = await cli(["dicomweb", "get", `${http}/dicom-web`, target, dest], env);
    assert.equal(frame.code, 0, frame.stderr);
    const lookup = (await (await api("/tools/lookup", { method: "POST", body: uid(st, se, n) })).json()) as Array<{
      ID: string;
      Type: string;
    }>;
    const id = lookup.find((x) => x.Type === "Instance")!.ID;
    const raw = Buffer.from(await (await api(`/instances/${id}/frames/0/raw`)).arrayBuffer());
    const side = 48 + ((st * 7 + n) % 16);
    assert.equal(raw.length, side * side);
    assert.deepEqual(await readFile(path.join(dest, uid(st), uid(st, se), uid(st, se, n), "frames", "1.raw")), raw);
  });

  test("get --rendered png of an instance: Orthanc's rendering, a whole PNG of the image's size", async () => {
    const dest = path.join(tmp, "orthanc-rendered");
    const [st, se, n] = [2, 1, 3];
    const r = await cli(
      [
        "dicomweb",
        "get",
        `${http}/dicom-web`,
        `studies/${uid(st)}/series/${uid(st, se)}/instances/${uid(st, se, n)}`,
        dest,
        "--rendered",
        "png",
      ],
      env,
    );
    assert.equal(r.code, 0, r.stderr);
    const png = PNG.sync.read(await readFile(path.join(dest, uid(st), uid(st, se), `${uid(st, se, n)}.png`)));
    const side = 48 + ((st * 7 + n) % 16);
    assert.deepEqual([png.width, png.height], [side, side]);
  });
});
