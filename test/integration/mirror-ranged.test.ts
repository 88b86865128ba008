import { after, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createServer, type IncomingMessage, type Server } from "node:http";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { closeSync, constants } from "node:fs";
import os from "node:os";
import path from "node:path";
import { renameStaged } from "../../src/core/atomic-file.ts";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { systemClock } from "../../src/core/clock.ts";
import { IntegrityError } from "../../src/core/errors.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import type { RetryNotice } from "../../src/core/retry.ts";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { noFaults, type FaultConfig } from "../../src/emulator/types.ts";
import { gcsSource } from "../../src/gcp/gcs-objects.ts";
import { downloadObject, type DownloadContext } from "../../src/mirror/download.ts";
import { mirror } from "../../src/mirror/mirror.ts";
import type { RemoteObject, RemoteSource } from "../../src/mirror/ports.ts";
import { planSlices, rangedPolicy, type RangedPolicy } from "../../src/mirror/ranged-download.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { listFiles, requireBuiltCli, spawnCli } from "../support/chaos.ts";
import { mountSkip } from "../support/cli.ts";
import { residentBytes } from "../support/page-cache.ts";
import { createMaybeDirectSync } from "../../src/core/direct-io.ts";

const MiB = 1024 * 1024;
const fastRetry = { retries: 8, backoff: { initialMs: 1, maxMs: 5, multiplier: 2, jitter: "equal" as const } };
const B = "ranged-bucket";
const NAME = "big/scan.dcm";
/** 40 MiB in slices of 8: five ranged GETs. */
const SLICE = 8 * MiB;
const policy = (p: Partial<Parameters<typeof rangedPolicy>[0]> = {}): RangedPolicy =>
  rangedPolicy({ threshold: MiB, sliceBytes: SLICE, parallel: 4, ...p });

let emu: RunningEmulator;
let client: HttpClient;
let tmp: string;
let data: Buffer;
let obj: RemoteObject;
let n = 0;

before(async () => {
  emu = await startEmulator();
  client = new HttpClient({ retry: fastRetry });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-ranged-"));
  emu.store.createBucket({ name: B, projectNumber: "1" });
  data = randomBytes(40 * MiB);
  emu.store.putObject(B, NAME, data, "application/dicom");
  emu.store.putObject(B, "big/small.dcm", Buffer.from("small"), "application/dicom");
  for await (const page of gcsSource(client, emu.baseUrl).listPages(B, "big/"))
    for (const o of page) if (o.name === NAME) obj = o;
  assert.ok(obj !== undefined && obj.crc32c === crc32cBase64(data));
});
beforeEach(() => {
  emu.faults = { ...noFaults };
  emu.requests.clear();
});
after(async () => {
  await client.close();
  await emu.close();
  await rm(tmp, { recursive: true, force: true });
});

function ctxFor(source: RemoteSource, p: RangedPolicy | false, extra: Partial<DownloadContext> = {}) {
  const dest = path.join(tmp, `d${++n}`);
  const ctx: DownloadContext = {
    source,
    bucket: B,
    dest,
    guard: new DirectoryGuard(dest),
    clock: systemClock,
    retry: fastRetry,
    ranged: p,
    ...extra,
  };
  return ctx;
}

/** A download through to its final name: the transfer stage's verified temp, then the commit stage's rename. */
async function landed(ctx: DownloadContext, obj: RemoteObject, rel: string) {
  return renameStaged(await downloadObject(ctx, obj, rel));
}

/** Every entry under `dir`, recursively (temp files included). */
async function entries(dir: string): Promise<string[]> {
  const all = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return all.map(String).sort();
}

/** The emulator's media requests for the big object: their Range headers and queries. */
function mediaRequests() {
  return emu.requests.entries.filter((e) => e.kind === "object.media" && e.path.endsWith(encodeURIComponent(NAME)));
}

const expectedRanges = (sliceBytes: number) =>
  planSlices(data.length, sliceBytes).map((s) => `bytes=${s.start}-${s.end}`);

/**
 * A source whose `n`-th openRange (counting from 1) runs with the emulator's faults set to
 * `faults`, others without: a fault lands on exactly one slice request. With parallel: 1 the
 * order of requests is the order of slices.
 */
function faultOn(nth: number, faults: Partial<FaultConfig>): RemoteSource {
  const inner = gcsSource(client, emu.baseUrl);
  let calls = 0;
  return {
    ...inner,
    openRange: async (bucket, o, start, end, signal) => {
      const mine = ++calls === nth;
      if (mine) emu.faults = { ...noFaults, ...faults, seed: 5 };
      try {
        // The emulator decides a body fault when it starts answering: by the time the headers
        // are here, this request's fault is chosen and the next one's will not be.
        return await inner.openRange!(bucket, o, start, end, signal);
      } finally {
        if (mine) emu.faults = { ...noFaults };
      }
    },
  };
}

describe("ranged download of a big object", () => {
  test("ranged GETs, one per slice, pinned to the generation; bytes identical; no temp file left", async () => {
    const ctx = ctxFor(gcsSource(client, emu.baseUrl), policy());
    const written = await landed(ctx, obj, "scan.dcm");
    assert.deepEqual(await readFile(path.join(ctx.dest, "scan.dcm")), data);
    assert.equal(written.bytes, data.length);
    assert.equal(written.crc32c, obj.crc32c);
    const reqs = mediaRequests();
    assert.deepEqual(reqs.map((r) => r.range).sort(), expectedRanges(SLICE).sort());
    for (const r of reqs) {
      const q = new URLSearchParams(r.query);
      assert.equal(q.get("generation"), obj.generation, "pinned to the listed generation");
      assert.equal(q.get("alt"), "media");
      assert.equal(r.status, 206);
    }
    assert.deepEqual(await entries(ctx.dest), ["scan.dcm"]);
  });

  test("the mirror slices big objects by default (halves of 20 MiB at 40 MiB) and streams small ones", async () => {
    const dest = path.join(tmp, "mirror");
    const summary = await mirror({
      source: gcsSource(client, emu.baseUrl),
      bucket: B,
      prefix: "big/",
      dest,
      retry: fastRetry,
    });
    assert.equal(summary.downloaded, 2);
    assert.deepEqual(await readFile(path.join(dest, "scan.dcm")), data);
    assert.deepEqual(await readFile(path.join(dest, "small.dcm")), Buffer.from("small"));
    assert.deepEqual(
      mediaRequests()
        .map((r) => r.range)
        .sort(),
      expectedRanges(20 * MiB).sort(),
    );
    const small = emu.requests.entries.filter((e) => e.kind === "object.media" && e.path.endsWith("small.dcm"));
    assert.deepEqual(
      small.map((e) => e.range),
      [undefined],
    );
  });

  test("a slice cut off mid-body is retried alone: the other slices are fetched once", async () => {
    for (const kind of ["truncateRate", "resetRate"] as const) {
      emu.requests.clear();
      const retries: RetryNotice[] = [];
      const ctx = ctxFor(faultOn(3, { [kind]: 1 }), policy({ parallel: 1 }), { onRetry: (r) => retries.push(r) });
      await landed(ctx, obj, "scan.dcm");
      assert.deepEqual(await readFile(path.join(ctx.dest, "scan.dcm")), data, kind);
      const ranges = mediaRequests().map((r) => r.range);
      const third = expectedRanges(SLICE)[2]!;
      assert.deepEqual(ranges, [...expectedRanges(SLICE).slice(0, 3), third, ...expectedRanges(SLICE).slice(3)], kind);
      assert.equal(retries.length, 1, kind);
      assert.deepEqual(await entries(ctx.dest), ["scan.dcm"]);
    }
  });

  test("random faults on every request (503, 429, resets, truncation): correct bytes, only ranged GETs", async () => {
    emu.faults = { ...noFaults, rate503: 0.15, rate429: 0.1, resetRate: 0.15, truncateRate: 0.15, seed: 42 };
    const ctx = ctxFor(gcsSource(client, emu.baseUrl), policy({ parallel: 4 }));
    await landed(ctx, obj, "scan.dcm");
    emu.faults = { ...noFaults };
    assert.deepEqual(await readFile(path.join(ctx.dest, "scan.dcm")), data);
    const ranges = mediaRequests().map((r) => r.range);
    assert.ok(ranges.length > 5, `faults hit some requests (${ranges.length} requests)`);
    for (const r of ranges) assert.ok(expectedRanges(SLICE).includes(r!), `a planned slice: ${r}`);
    assert.deepEqual(new Set(ranges), new Set(expectedRanges(SLICE)));
    assert.deepEqual(await entries(ctx.dest), ["scan.dcm"]);
  });

  test("a corrupt slice (right length, flipped byte) is caught by the combined CRC32C and all slices refetched", async () => {
    const retries: RetryNotice[] = [];
    const ctx = ctxFor(faultOn(2, { corruptRate: 1 }), policy({ parallel: 1 }), { onRetry: (r) => retries.push(r) });
    await landed(ctx, obj, "scan.dcm");
    assert.deepEqual(await readFile(path.join(ctx.dest, "scan.dcm")), data);
    assert.deepEqual(
      mediaRequests().map((r) => r.range),
      [...expectedRanges(SLICE), ...expectedRanges(SLICE)],
    );
    assert.equal(retries.length, 1);
    assert.ok(retries[0]!.error instanceof IntegrityError);
    assert.match(String((retries[0]!.error as Error).message), /combined from 5 slices/);

    // No retries left: the mismatch fails the object, and nothing is left under any name.
    const strict = ctxFor(faultOn(4, { corruptRate: 1 }), policy({ parallel: 1 }), {
      retry: { ...fastRetry, retries: 0 },
    });
    await assert.rejects(downloadObject(strict, obj, "scan.dcm"), (err: unknown) => {
      assert.ok(err instanceof IntegrityError);
      assert.match(err.message, new RegExp(`crc32c .* does not match the listed ${obj.crc32c!.replace(/[+/]/g, ".")}`));
      return true;
    });
    assert.deepEqual(await entries(strict.dest), []);
  });

  test("aborted mid-download: rejects, nothing under the final name, no temp file", async () => {
    const ac = new AbortController();
    const inner = gcsSource(client, emu.baseUrl);
    let calls = 0;
    const source: RemoteSource = {
      ...inner,
      openRange: async (...args) => {
        if (++calls === 3) ac.abort(new Error("stop"));
        return inner.openRange!(...args);
      },
    };
    const ctx = ctxFor(source, policy({ parallel: 2 }), { signal: ac.signal });
    await assert.rejects(downloadObject(ctx, obj, "scan.dcm"));
    // The temp file is removed once every slice has settled (the rejection waits for them).
    assert.deepEqual(
      (await entries(ctx.dest)).filter((e) => !e.endsWith("/")),
      [],
    );
  });
});

describe("ranged download, direct I/O", () => {
  const ODD = "odd/scan.dcm";
  /** 40 MiB and a bit: the last slice ends mid-block, so its last write is padded and the file cut back. */
  const odd = randomBytes(40 * MiB + 1234);
  before(() => void emu.store.putObject(B, ODD, odd, "application/dicom"));

  test("the built CLI lands a big object that ends mid-block byte for byte, none of it through the page cache", async (t) => {
    const dest = path.join(tmp, "odd");
    const r = await spawnCli(
      requireBuiltCli(),
      ["mirror", `gs://${B}/odd/`, dest, "--emulator", emu.baseUrl, "--quiet"],
      {
        cwd: tmp,
      },
    );
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(dest, "scan.dcm");
    const cached = residentBytes([file]);
    assert.equal((await stat(file)).size, odd.length);
    assert.deepEqual(await readFile(file), odd);
    // The default cuts it in two: 21 MiB, then 19 MiB + 1234 bytes (not a whole block: padded, cut back).
    const ranges = emu.requests.entries.filter(
      (e) => e.kind === "object.media" && e.path.endsWith(encodeURIComponent(ODD)),
    );
    assert.deepEqual(
      ranges.map((e) => e.range),
      [`bytes=0-${21 * MiB - 1}`, `bytes=${21 * MiB}-${odd.length - 1}`],
    );
    if (cached === undefined) return t.skip("no fincore (util-linux)");
    const probe = createMaybeDirectSync(
      path.join(tmp, "odd-probe"),
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      0o644,
      true,
    );
    closeSync(probe.fd);
    if (!probe.direct) return t.skip("this file system refuses O_DIRECT");
    assert.ok(cached <= odd.length * 0.01, `${cached} of ${odd.length} bytes in the page cache`);
  });

  test("slices that are not whole blocks are written through the page cache, and land the same", async (t) => {
    const ctx = ctxFor(gcsSource(client, emu.baseUrl), policy({ sliceBytes: SLICE + 1 }));
    const w = await landed(ctx, obj, "scan.dcm");
    const cached = residentBytes([w.path]);
    assert.deepEqual(await readFile(w.path), data);
    if (cached === undefined) return t.skip("no fincore (util-linux)");
    assert.ok(cached >= data.length * 0.9, `${cached} of ${data.length} bytes in the page cache`);
  });
});

describe("ranged download, killed", () => {
  test("SIGKILL while slices are landing (the built CLI), then a rerun: byte-identical, no temp file", async () => {
    const cli = requireBuiltCli();
    const dest = path.join(tmp, "killed");
    const args = ["mirror", `gs://${B}/big/`, dest, "--emulator", emu.baseUrl, "--quiet"];
    // Responses slowed a little so the kill lands mid-object (a temp file present, not renamed).
    emu.faults = { ...noFaults, latencyMs: 30 };
    let sawTemp = false;
    let poll: NodeJS.Timeout | undefined;
    const first = await spawnCli(cli, args, {
      cwd: tmp,
      onSpawn: (child) => {
        poll = setInterval(() => {
          void listFiles(dest).then((files) => {
            if (!sawTemp && files.some((f) => f.includes(TEMP_MARKER) && f.includes("scan.dcm"))) {
              sawTemp = true;
              child.kill("SIGKILL");
            }
          });
        }, 2);
      },
    });
    clearInterval(poll);
    emu.faults = { ...noFaults };
    assert.equal(first.signal, "SIGKILL", `killed mid-download (exit ${first.code}: ${first.stderr})`);
    assert.ok(sawTemp);
    assert.ok(!(await listFiles(dest)).includes("scan.dcm"), "nothing under the final name");
    const again = await spawnCli(cli, args, { cwd: tmp });
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(await readFile(path.join(dest, "scan.dcm")), data);
    const left = (await listFiles(dest)).filter((f) => !f.startsWith(".hcexport/"));
    assert.deepEqual(left, ["scan.dcm", "small.dcm"], "the killed run's temp file is swept");
  });
});

describe("ranged download onto a full disk", () => {
  const canMount = mountSkip("mirror-ranged");
  test(
    "ENOSPC mid-slice (the file was sized, not allocated): fails at once, no retry, no temp file",
    { skip: canMount },
    async () => {
      const ctx = ctxFor(gcsSource(client, emu.baseUrl), policy({ parallel: 4 }));
      await import("node:fs/promises").then((fs) => fs.mkdir(ctx.dest, { recursive: true }));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=20m", "tmpfs", ctx.dest]);
      try {
        await assert.rejects(downloadObject(ctx, obj, "scan.dcm"), (err: unknown) => {
          assert.equal((err as NodeJS.ErrnoException).code, "ENOSPC");
          return true;
        });
        assert.deepEqual(await entries(ctx.dest), []);
        const ranges = mediaRequests().map((r) => r.range);
        assert.ok(
          ranges.length <= 5 && new Set(ranges).size === ranges.length,
          `no slice retried: ${ranges.join(" ")}`,
        );
      } finally {
        execFileSync("umount", ["-l", ctx.dest]);
      }
    },
  );
});

/** A tiny media server that misbehaves on Range: `ignore` answers 200 with the whole body, `wrong` 206 with another range. */
async function rangeServer(
  mode: "ignore" | "wrong",
): Promise<{ url: string; ranges: (string | undefined)[]; server: Server }> {
  const ranges: (string | undefined)[] = [];
  const server = createServer((req: IncomingMessage, res) => {
    ranges.push(req.headers.range);
    if (mode === "ignore" || req.headers.range === undefined) {
      res.writeHead(200, { "content-length": data.length, "x-goog-generation": obj.generation });
      res.end(data);
      return;
    }
    // Always the first bytes, labelled as such, whatever was asked.
    const len =
      Number(/bytes=(\d+)-(\d+)/.exec(req.headers.range)![2]) - Number(/bytes=(\d+)/.exec(req.headers.range)![1]) + 1;
    res.writeHead(206, { "content-length": len, "content-range": `bytes 0-${len - 1}/${data.length}` });
    res.end(data.subarray(0, len));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, ranges, server };
}

describe("ranged download against servers that do not honour Range", () => {
  test("a server that ignores Range (200, whole body) still yields a correct file, by one plain stream", async () => {
    const s = await rangeServer("ignore");
    const local = new HttpClient({ retry: fastRetry });
    try {
      const ctx = ctxFor(gcsSource(local, s.url), policy({ parallel: 4 }));
      const written = await landed(ctx, obj, "scan.dcm");
      assert.deepEqual(await readFile(path.join(ctx.dest, "scan.dcm")), data);
      assert.equal(written.crc32c, obj.crc32c);
      // Up to `parallel` ranged tries (the first 200 stops the rest), then one GET without Range.
      const ranged = s.ranges.filter((r) => r !== undefined);
      assert.ok(ranged.length >= 1 && ranged.length <= 4, `ranged tries: ${ranged.length}`);
      assert.equal(s.ranges.at(-1), undefined, "the fallback asks for the whole object");
      assert.equal(s.ranges.filter((r) => r === undefined).length, 1);
      assert.deepEqual(await entries(ctx.dest), ["scan.dcm"]);
    } finally {
      await local.close();
      s.server.close();
    }
  });

  test("a server answering 206 with another range than asked: refused, retried, nothing written", async () => {
    const s = await rangeServer("wrong");
    const local = new HttpClient({ retry: fastRetry });
    try {
      const ctx = ctxFor(gcsSource(local, s.url), policy({ parallel: 2 }), { retry: { ...fastRetry, retries: 2 } });
      await assert.rejects(downloadObject(ctx, obj, "scan.dcm"), (err: unknown) => {
        assert.ok(err instanceof IntegrityError);
        assert.match(err.message, /asked for \d+-\d+\/41943040, got HTTP 206 with Content-Range bytes 0-/);
        return true;
      });
      assert.ok(s.ranges.length >= 3, "the bad slice was retried");
      assert.deepEqual(await entries(ctx.dest), []);
    } finally {
      await local.close();
      s.server.close();
    }
  });
});
