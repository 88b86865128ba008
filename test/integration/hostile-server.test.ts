import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { IntegrityError } from "../../src/core/errors.ts";
import { dicomwebSource } from "../../src/dicomweb/client.ts";
import { pull } from "../../src/dicomweb/pull.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { downloadAttachment } from "../../src/fhir/annotations.ts";
import { gcsSource } from "../../src/gcp/gcs-objects.ts";
import { mirror } from "../../src/mirror/mirror.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { requireBuiltCli, spawnCli } from "../support/chaos.ts";
import { cliIn, type CliResult } from "../support/cli.ts";
import { credentialedEndpointArgs, startFakeAdc } from "../support/fake-adc.ts";
import { HostileServer } from "../support/hostile-server.ts";

/**
 * The mirror, dicomweb pull and fhir get paths against a server that misbehaves on purpose
 * (test/support/hostile-server.ts), and against the local cloud where GCS behaviour matters
 * (gzip transcoding). Issue #10, findings 9–18. Short timeouts (--timeout 1) keep it fast.
 */

let hs: HostileServer;
let emu: RunningEmulator;
let tmp: string;
const B = "hostile";

before(async () => {
  hs = await HostileServer.start();
  emu = await startEmulator();
  emu.store.createBucket({ name: B, projectNumber: "1" });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-hostile-"));
});
after(async () => {
  await hs.close();
  await emu.close();
  await rm(tmp, { recursive: true, force: true });
});
beforeEach(() => {
  hs.reset();
  hs.objects = [];
});

let dirs = 0;
const freshDir = () => path.join(tmp, `d${++dirs}`);

async function mirrorCli(
  dir: string,
  extra: readonly string[] = [],
  endpoint = hs.url,
  prefix = "train",
): Promise<CliResult & { ms: number }> {
  const t0 = performance.now();
  const r = await cliIn(["mirror", `gs://${B}/${prefix}`, dir, "--emulator", endpoint, "--timeout", "1", ...extra], {
    cwd: tmp,
  });
  return { ...r, ms: performance.now() - t0 };
}

function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** Every entry under `dir` (outside `.hcexport/`), directories with a trailing `/`. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    const rel = path.relative(dir, path.join(e.parentPath, e.name));
    if (rel === ".hcexport" || rel.startsWith(".hcexport/")) continue;
    out.push(e.isDirectory() ? `${rel}/` : rel);
  }
  return out.sort();
}

const media = () => hs.requestsTo(/\/download\/|alt=media/);

describe("mirror against a hostile GCS", () => {
  test(
    "9: folder placeholders are directories: exit 0, none refused, --delete still works",
    { timeout: 30_000 },
    async () => {
      const data = bytes(300, 1);
      hs.objects = [
        { name: "train/", data: Buffer.alloc(0) },
        { name: "train/fold/", data: Buffer.alloc(0) },
        { name: "train/fold/sub/", data: Buffer.alloc(0) },
        { name: "train/fold/a.dcm", data },
        { name: "train/empty/", data: Buffer.alloc(0) },
      ];
      const dir = freshDir();
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "stale.dcm"), "old");
      const r = await mirrorCli(dir, ["--delete"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await tree(dir), ["empty/", "fold/", "fold/a.dcm", "fold/sub/"]);
      assert.deepEqual(await readFile(path.join(dir, "fold/a.dcm")), data);
      assert.doesNotMatch(r.stderr, /refused/);
      // Only the real object was fetched: placeholders need no request.
      assert.equal(media().length, 1);

      // A name ending in '/' that holds bytes is not a placeholder: still refused (exit 5).
      hs.objects = [...hs.objects, { name: "train/notdir/", data: Buffer.from("bytes") }];
      const r2 = await mirrorCli(freshDir());
      assert.equal(r2.code, 5, r2.stderr);
      assert.match(r2.stderr, /refused "train\/notdir\/"/);
    },
  );

  test(
    "11: an endless body is cut at the listed size and retried (small and large objects)",
    { timeout: 30_000 },
    async () => {
      const small = bytes(1000, 2);
      const large = bytes(5 * 1024 * 1024, 3);
      hs.objects = [
        { name: "train/large.bin", data: large },
        { name: "train/small.bin", data: small },
      ];
      hs.script(/large\.bin/, [{ kind: "endless" }]);
      hs.script(/small\.bin/, [{ kind: "endless" }]);
      const dir = freshDir();
      const rss0 = process.memoryUsage().rss;
      const r = await mirrorCli(dir);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.ms < 15_000, `took ${r.ms} ms`);
      assert.deepEqual(await readFile(path.join(dir, "small.bin")), small);
      assert.deepEqual(await readFile(path.join(dir, "large.bin")), large);
      assert.equal(media().length, 4, "each object: one endless answer, cut, then one good retry");
      assert.ok(process.memoryUsage().rss - rss0 < 512 * 1024 * 1024, "memory stayed bounded");
      assert.deepEqual(await tree(dir), ["large.bin", "small.bin"], "no temp file left behind");
    },
  );

  test(
    "12: page tokens cycling A, B, A… stop the listing: exit 1 with a clear message",
    { timeout: 30_000 },
    async () => {
      for (const names of [0, 3]) {
        hs.reset();
        hs.cycleTokens = ["A", "B"];
        hs.namesPerCyclePage = names;
        const dir = freshDir();
        const r = await mirrorCli(dir, ["--delete"]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /same nextPageToken again/);
        assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
        assert.ok(hs.requestsTo(/\/o\?/).length <= 3, `${hs.requestsTo(/\/o\?/).length} listing requests`);
      }
    },
  );

  test("13: a valid 244-byte name (80 × 漢 + .dcm) lands", { timeout: 30_000 }, async () => {
    const name = `${"漢".repeat(80)}.dcm`;
    assert.equal(Buffer.byteLength(name), 244);
    const data = bytes(500, 4);
    hs.objects = [{ name: `train/${name}`, data }];
    const dir = freshDir();
    const r = await mirrorCli(dir);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(path.join(dir, name)), data);
  });

  test(
    "14: local names that are not UTF-8 are destination-only: mirrored around, deleted by their bytes",
    { timeout: 30_000 },
    async () => {
      const dir = freshDir();
      await mkdir(dir, { recursive: true });
      const latin = [Buffer.from("0-caf\xe9.txt", "latin1"), Buffer.from("0-caf\xe8.txt", "latin1")];
      for (const n of latin) await writeFile(Buffer.concat([Buffer.from(`${dir}/`), n]), "latin-1 leftover");
      hs.objects = Array.from({ length: 20 }, (_, i) => ({ name: `train/${i}.dcm`, data: bytes(100, i) }));
      const r = await mirrorCli(dir);
      assert.equal(r.code, 0, r.stderr);
      const rawNames = async () =>
        (await readdir(Buffer.from(dir), { encoding: "buffer" })).filter((n) => n.toString().endsWith(".txt"));
      assert.equal((await rawNames()).length, 2, "kept without --delete");
      assert.equal((await readdir(dir)).filter((n) => n.endsWith(".dcm")).length, 20);

      const d = await mirrorCli(dir, ["--delete"]);
      assert.equal(d.code, 0, d.stderr);
      assert.deepEqual(await rawNames(), [], "both non-UTF-8 files are really gone");
      assert.equal((await readdir(dir)).filter((n) => n.endsWith(".dcm")).length, 20);
    },
  );

  test(
    "15: a corrupt, truncated or misplaced manifest is set aside and rebuilt by hashing",
    { timeout: 30_000 },
    async () => {
      hs.objects = Array.from({ length: 5 }, (_, i) => ({ name: `train/${i}.dcm`, data: bytes(2000, i) }));
      const dir = freshDir();
      assert.equal((await mirrorCli(dir)).code, 0);
      const file = path.join(dir, ".hcexport", "manifest.sqlite");
      const good = await readFile(file);
      const breakIt = [
        async () => writeFile(file, "this is not a database at all, just text ".repeat(100)),
        async () => writeFile(file, good.subarray(0, 100)),
        async () => {
          await rm(file);
          await mkdir(file);
        },
      ];
      for (const [i, damage] of breakIt.entries()) {
        for (const side of ["-wal", "-shm"]) await rm(file + side, { force: true });
        await damage();
        hs.reset();
        const r = await mirrorCli(dir);
        assert.equal(r.code, 0, `case ${i}: ${r.stderr}`);
        const notice = r.stderr.split("\n").filter((l) => l.includes("manifest.sqlite"));
        assert.equal(notice.length, 1, `case ${i}: one line says so:\n${r.stderr}`);
        assert.match(notice[0]!, /kept as .*manifest\.sqlite\.corrupt-\d+.*rebuilding/);
        assert.equal(media().length, 0, `case ${i}: rebuilt by hashing, nothing downloaded`);
        const aside = (await readdir(path.join(dir, ".hcexport"))).filter((n) =>
          /^manifest\.sqlite\.corrupt-\d+$/.test(n),
        );
        assert.equal(aside.length, i + 1, `case ${i}: the broken file is kept`);
        // The rebuilt manifest vouches again: a third run neither hashes nor downloads.
        const again = await mirrorCli(dir, ["--json"]);
        const done = again.stdout
          .split("\n")
          .filter((l) => l.includes('"mirror.done"'))
          .map((l) => JSON.parse(l) as { summary: { hashed: number; downloaded: number } });
        assert.equal(done[0]?.summary.hashed, 0, again.stdout);
      }
    },
  );

  test(
    "16: stalls time out per read (--timeout 1), on a fresh connection; a server that always stalls hits the budget",
    { timeout: 30_000 },
    async () => {
      hs.objects = [
        { name: "train/body.bin", data: bytes(50_000, 5) },
        { name: "train/head.bin", data: bytes(50_000, 6) },
      ];
      hs.script(/body\.bin/, [{ kind: "stall-body", afterBytes: 1000 }]);
      hs.script(/head\.bin/, [{ kind: "stall-headers" }]);
      const dir = freshDir();
      const r = await mirrorCli(dir);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.ms < 12_000, `took ${r.ms} ms (a 60 s timeout would take minutes)`);
      for (const n of ["body", "head"]) {
        const got = hs.requestsTo(new RegExp(`${n}\\.bin`));
        assert.equal(got.length, 2, n);
        assert.notEqual(got[1]!.connection, got[0]!.connection, `${n}: the stalled connection was not reused`);
        assert.deepEqual(await readFile(path.join(dir, `${n}.bin`)), hs.objects.find((o) => o.name.includes(n))!.data);
      }

      hs.reset();
      hs.objects = [{ name: "train/never.bin", data: bytes(1000, 7) }];
      hs.script(/never\.bin/, [{ kind: "stall-body", afterBytes: 10 }], true);
      const t = await mirrorCli(freshDir());
      assert.equal(t.code, 5, t.stderr);
      assert.match(t.stderr, /time budget/);
      assert.ok(t.ms < 20_000, `took ${t.ms} ms`);
    },
  );

  test(
    "17: objects without crc32c or md5 are compared by size + generation, not fetched again",
    { timeout: 30_000 },
    async () => {
      hs.objects = [
        { name: "train/nohash.bin", data: bytes(3000, 8), crc32c: null, md5Hash: null, generation: "7", etag: "e7" },
        { name: "train/hashed.bin", data: bytes(3000, 9) },
      ];
      const dir = freshDir();
      const first = await mirrorCli(dir);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /1 object\(s\) had no CRC32C or MD5/);
      assert.equal(media().length, 2);
      hs.reset();
      const second = await mirrorCli(dir);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(media().length, 0, "nothing downloaded again");
      // A new generation of the same size is new content: fetched.
      hs.objects = [{ ...hs.objects[0]!, data: bytes(3000, 10), generation: "8", etag: "e8" }, hs.objects[1]!];
      hs.reset();
      assert.equal((await mirrorCli(dir)).code, 0);
      assert.equal(media().length, 1);
      assert.deepEqual(await readFile(path.join(dir, "nohash.bin")), bytes(3000, 10));
    },
  );

  test("18: --delete with a prefix that lists nothing deletes nothing and exits 2", { timeout: 30_000 }, async () => {
    hs.objects = [{ name: "train/a.dcm", data: bytes(10, 1) }];
    const dir = freshDir();
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, "precious.dcm"), "keep me");
    const r = await mirrorCli(dir, ["--delete"], hs.url, "trian");
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /source lists nothing: check the prefix/);
    assert.equal(await readFile(path.join(dir, "precious.dcm"), "utf8"), "keep me");
    const ok = await mirrorCli(dir, ["--delete", "--allow-empty-source"], hs.url, "trian");
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(existsSync(path.join(dir, "precious.dcm")), false);
  });

  test("lying sizes and hashes never land, retried then given up", { timeout: 30_000 }, async () => {
    hs.objects = [
      { name: "train/size.bin", data: bytes(1000, 1), listedSize: 999 },
      { name: "train/crc.bin", data: bytes(1000, 2), crc32c: "AAAAAA==" },
    ];
    const dir = freshDir();
    const client = new HttpClient({ timeoutMs: 1000 });
    try {
      const s = await mirror({
        source: gcsSource(client, hs.url),
        bucket: B,
        prefix: "train",
        dest: dir,
        retry: { retries: 2, backoff: { initialMs: 5, maxMs: 20, multiplier: 2, jitter: "equal" } },
      });
      assert.equal(s.failed, 2);
      assert.deepEqual(s.failures.map((f) => f.name).sort(), ["train/crc.bin", "train/size.bin"]);
      assert.match(s.failures.find((f) => f.name === "train/size.bin")!.reason, /longer than the listed 999 bytes/);
      assert.match(s.failures.find((f) => f.name === "train/crc.bin")!.reason, /crc32c .* does not match/);
    } finally {
      await client.close();
    }
    assert.deepEqual(await tree(dir), [], "nothing under a final name, no temp file");
    assert.equal(media().length, 6, "three attempts each");
  });
});

describe("gzip-encoded objects (finding 10)", () => {
  test("the local cloud transcodes like GCS unless the client accepts gzip", { timeout: 30_000 }, async () => {
    const plain = Buffer.from("a,b\n1,2\n".repeat(500));
    const stored = gzipSync(plain);
    emu.store.putObject(B, "gz/t.csv", stored, "text/csv", undefined, { contentEncoding: "gzip" });
    const url = `${emu.baseUrl}/download/storage/v1/b/${B}/o/${encodeURIComponent("gz/t.csv")}?alt=media`;
    const { request } = await import("undici");
    const transcoded = await request(url);
    assert.equal(transcoded.headers["x-goog-stored-content-encoding"], "gzip");
    assert.equal(transcoded.headers["content-length"], undefined);
    assert.deepEqual(Buffer.from(await transcoded.body.arrayBuffer()), plain);
    const raw = await request(url, { headers: { "accept-encoding": "gzip" } });
    assert.equal(raw.headers["content-encoding"], "gzip");
    assert.deepEqual(Buffer.from(await raw.body.arrayBuffer()), stored);
    const meta = await (
      await request(`${emu.baseUrl}/storage/v1/b/${B}/o/${encodeURIComponent("gz/t.csv")}`)
    ).body.json();
    assert.equal((meta as { contentEncoding?: string }).contentEncoding, "gzip");
    // Uploaded through the JSON API (objects.insert's contentEncoding parameter), then copied: the same.
    const up = await request(
      `${emu.baseUrl}/upload/storage/v1/b/${B}/o?uploadType=media&name=gz%2Fu.csv&contentEncoding=gzip`,
      { method: "POST", body: stored, headers: { "content-type": "text/csv" } },
    );
    assert.equal(((await up.body.json()) as { contentEncoding?: string }).contentEncoding, "gzip");
    const cp = await request(`${emu.baseUrl}/storage/v1/b/${B}/o/gz%2Fu.csv/copyTo/b/${B}/o/gz%2Fv.csv`, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    assert.equal(((await cp.body.json()) as { contentEncoding?: string }).contentEncoding, "gzip");
    const again = await request(`${emu.baseUrl}/download/storage/v1/b/${B}/o/gz%2Fv.csv?alt=media`);
    assert.deepEqual(Buffer.from(await again.body.arrayBuffer()), plain);
  });

  test(
    "the mirror fetches the stored gzip bytes, verifies them and writes them as stored",
    { timeout: 30_000 },
    async () => {
      const plain = Buffer.from("ImageId,EncodedPixels\n".repeat(2000));
      const stored = gzipSync(plain);
      emu.store.putObject(B, "gzm/a.csv", stored, "text/csv", undefined, { contentEncoding: "gzip" });
      emu.store.putObject(B, "gzm/b.dcm", bytes(4000, 1), "application/dicom");
      const dir = freshDir();
      const r = await mirrorCli(dir, [], emu.baseUrl, "gzm");
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await readFile(path.join(dir, "a.csv")), stored);
      assert.deepEqual(await readFile(path.join(dir, "b.dcm")), bytes(4000, 1));
      // And against the hostile server: the request carried Accept-Encoding: gzip.
      hs.objects = [{ name: "train/x.csv", data: stored, contentEncoding: "gzip" }];
      const d2 = freshDir();
      assert.equal((await mirrorCli(d2)).code, 0);
      assert.equal(media()[0]?.headers["accept-encoding"], "gzip");
      assert.deepEqual(await readFile(path.join(d2, "x.csv")), stored);
    },
  );
});

describe("dicomweb pull and fhir get against a hostile server", () => {
  const inst = generateInstance(0, { seed: 5, instanceBytes: 20_000, storeIndex: 0 });
  const ref = { study: inst.studyUid, series: inst.seriesUid, instance: inst.sopInstanceUid };
  const rel = `${ref.study}/${ref.series}/${ref.instance}.dcm`;

  test(
    "16: a WADO body that stalls is dropped after --timeout and retried on a new connection",
    { timeout: 30_000 },
    async () => {
      hs.instances = [{ ...ref, data: inst.data() }];
      hs.script(/\/instances\/[\d.]+$/, [{ kind: "stall-body", afterBytes: 2000 }]);
      const dir = freshDir();
      const t0 = performance.now();
      const r = await cliIn(
        ["dicomweb", "pull", `${hs.url}/dicomWeb`, dir, "--search", "instances", "--timeout", "1"],
        { cwd: tmp },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.ok(performance.now() - t0 < 12_000);
      const wado = hs.requestsTo(/\/instances\/[\d.]+$/);
      assert.equal(wado.length, 2);
      assert.notEqual(wado[0]!.connection, wado[1]!.connection);
      assert.deepEqual(await readFile(path.join(dir, rel)), inst.data());
    },
  );

  test(
    "11: an endless WADO body is cut (no Content-Length: at the instance cap), retried, never fills the disk",
    { timeout: 30_000 },
    async () => {
      hs.instances = [{ ...ref, data: inst.data() }];
      hs.script(/\/instances\/[\d.]+$/, [{ kind: "endless" }]);
      const client = new HttpClient({ timeoutMs: 2000 });
      const dir = freshDir();
      try {
        const s = await pull({
          source: dicomwebSource(client, `${hs.url}/dicomWeb`),
          label: "hostile",
          dest: dir,
          pageSize: 100,
          concurrency: 1,
          mode: "instance",
          search: "instances",
          maxInstanceBytes: 1024 * 1024,
          retry: { retries: 3, backoff: { initialMs: 5, maxMs: 20, multiplier: 2, jitter: "equal" } },
        });
        assert.equal(s.downloaded, 1);
      } finally {
        await client.close();
      }
      assert.deepEqual(await readFile(path.join(dir, rel)), inst.data());
      assert.equal(hs.requestsTo(/\/instances\/[\d.]+$/).length, 2);
    },
  );

  test("11: an endless FHIR attachment is cut at the cap; nothing lands", { timeout: 30_000 }, async () => {
    hs.files.set("ann.csv", Buffer.from("ImageId,EncodedPixels\n1,-1\n"));
    hs.script(/\/files\/ann\.csv/, [{ kind: "endless" }]);
    const client = new HttpClient({});
    const dir = freshDir();
    try {
      await assert.rejects(
        downloadAttachment(
          {
            client,
            healthcareBase: hs.url,
            storageBase: hs.url,
            fhirStore: "projects/p/locations/l/datasets/d/fhirStores/f",
            maxAttachmentBytes: 256 * 1024,
          },
          { url: `${hs.url}/files/ann.csv`, contentType: "text/csv" },
          dir,
          "ann.csv",
        ),
        (err: unknown) => err instanceof IntegrityError && /longer than/.test(err.message),
      );
    } finally {
      await client.close();
    }
    assert.deepEqual(existsSync(dir) ? await tree(dir) : [], []);
  });

  test("fhir get downloads the attachment from the server it names", { timeout: 30_000 }, async () => {
    const csv = Buffer.from("ImageId,EncodedPixels\n1.2.3,-1\n");
    hs.files.set("masks.csv", csv);
    hs.fhir.set("DocumentReference/doc1", {
      resourceType: "DocumentReference",
      status: "current",
      content: [{ attachment: { contentType: "text/csv", url: `${hs.url}/files/masks.csv`, title: "masks.csv" } }],
    });
    const dir = freshDir();
    const r = await cliIn(
      [
        "fhir",
        "get",
        "projects/p/locations/l/datasets/d/fhirStores/f",
        "DocumentReference/doc1",
        "--attachment",
        dir,
        "--emulator",
        hs.url,
      ],
      { cwd: tmp },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(path.join(dir, "masks.csv")), csv);
    assert.equal(hs.requestsTo(/\/fhir\/DocumentReference\/doc1$/).length, 1);
  });
});

describe("credentials against a hostile server (redirects in-process; the built CLI with real ADC)", () => {
  const TOKEN = "ya29.hostile-fixture-token-0123456789";
  let other: HostileServer;
  let adc: Awaited<ReturnType<typeof startFakeAdc>>;
  let cli: string;
  before(async () => {
    cli = requireBuiltCli();
    other = await HostileServer.start("localhost");
    adc = await startFakeAdc(TOKEN, tmp);
  });
  after(async () => {
    await other.close();
    await adc.close();
  });
  const env = () => ({ GOOGLE_APPLICATION_CREDENTIALS: adc.file, HCEXPORT_EMULATOR: "", CI: process.env["CI"] });
  const bearer = (r: { headers: Record<string, unknown> }) => String(r.headers["authorization"] ?? "");

  test(
    "a redirect to another host never carries the token (mirror media, fhir attachment)",
    { timeout: 30_000 },
    async () => {
      other.reset();
      const auth = { headers: async () => ({ authorization: `Bearer ${TOKEN}` }), description: "test bearer" };
      const client = new HttpClient({ auth, timeoutMs: 1000 });
      try {
        hs.objects = [{ name: "train/a.dcm", data: bytes(100, 1) }];
        other.objects = hs.objects;
        hs.script(
          /\/download\//,
          [{ kind: "redirect", location: `${other.url}/download/storage/v1/b/${B}/o/train%2Fa.dcm?alt=media` }],
          true,
        );
        const s = await mirror({
          source: gcsSource(client, hs.url),
          bucket: B,
          prefix: "train",
          dest: freshDir(),
          retry: { retries: 0, backoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: "none" } },
        });
        assert.equal(s.failed, 1);
        assert.match(s.failures[0]!.reason, /HTTP 302/);

        hs.fhir.set("DocumentReference/r1", {
          resourceType: "DocumentReference",
          content: [{ attachment: { contentType: "text/csv", url: `${hs.url}/files/r1.csv` } }],
        });
        other.files.set("r1.csv", Buffer.from("ImageId,EncodedPixels\n"));
        hs.script(/\/files\/r1\.csv/, [{ kind: "redirect", location: `${other.url}/files/r1.csv` }], true);
        const target = {
          client,
          healthcareBase: hs.url,
          storageBase: hs.url,
          fhirStore: "projects/p/locations/l/datasets/d/fhirStores/f",
        };
        await assert.rejects(
          downloadAttachment(target, { url: `${hs.url}/files/r1.csv` }, freshDir(), "r1.csv"),
          /302/,
        );
      } finally {
        await client.close();
      }
      assert.ok(
        hs.requestsTo(/\/download\/|\/files\//).every((r) => bearer(r) === `Bearer ${TOKEN}`),
        "the token was in play",
      );
      assert.deepEqual(
        other.requests.filter((r) => bearer(r) !== ""),
        [],
        "no request to the other host carried credentials",
      );
    },
  );

  test(
    "an error body that echoes the request (token included) never reaches the output",
    { timeout: 30_000 },
    async () => {
      hs.script(/\/o\?/, [{ kind: "echo", status: 403 }], true);
      const r = await spawnCli(
        cli,
        // 0.0.0.0 is not a loopback spelling: credentials go there only with --allow-insecure-auth.
        [
          "mirror",
          `gs://${B}/train`,
          freshDir(),
          ...credentialedEndpointArgs(hs.url.replace("127.0.0.1", "0.0.0.0")),
          "--timeout",
          "1",
          "--delete",
        ],
        { cwd: tmp, env: env() },
      );
      assert.notEqual(r.code, 0);
      assert.ok(
        hs.requestsTo(/\/o\?/).some((x) => bearer(x) === `Bearer ${TOKEN}`),
        `the token was sent and echoed (exit ${r.code}): ${r.stderr}`,
      );
      assert.ok(!`${r.stdout}${r.stderr}`.includes(TOKEN), r.stderr);
      assert.ok(!`${r.stdout}${r.stderr}`.includes(TOKEN.slice(6)), r.stderr);
    },
  );
});
