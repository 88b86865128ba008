import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, constants } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { THREAD_MIN_BYTES } from "../../src/core/stage-pool.ts";
import { createMaybeDirectSync, DIRECT_MIN_BYTES } from "../../src/core/direct-io.ts";
import { gcsSource } from "../../src/gcp/gcs-objects.ts";
import { mirror } from "../../src/mirror/mirror.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { residentBytes } from "../support/page-cache.ts";

/**
 * The mirror's objects of SIIM size (≥ THREAD_MIN_BYTES) are verified and written on the stage
 * thread (with direct I/O when asked), and the mirror's heap marks late (issue #11). Through the built CLI: the
 * bytes on disk, what of them the page cache holds (`fincore`), the full collections V8 reports
 * (`--trace-gc`), and a SIGKILL while the thread is writing.
 */

const B = "stage-thread";
const N = 1200;
const SIZE = 150_000;
let emu: RunningEmulator;
let tmp: string;
const objects = new Map<string, Buffer>();
const cli = path.resolve("bin/hcexport.js");

function content(i: number): Buffer {
  const b = Buffer.allocUnsafe(SIZE);
  for (let j = 0; j + 4 <= SIZE; j += 4) b.writeUInt32LE((Math.imul(i + 1, 2654435761) ^ j) >>> 0, j);
  return b;
}

async function files(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** Every object byte for byte under its name, nothing else but the manifest, no temp file. */
async function assertMirrored(dir: string): Promise<void> {
  const all = (await files(dir)).filter((f) => !f.startsWith(".hcexport/"));
  assert.deepEqual(all, [...objects.keys()].map((n) => n.slice("train/".length)).sort());
  for (const [name, data] of objects) assert.ok(data.equals(await readFile(path.join(dir, name.slice(6)))), name);
}

function run(
  dir: string,
  env: NodeJS.ProcessEnv = {},
  nodeArgs: string[] = [],
  { prefix = "train", concurrency = 16 } = {},
): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(
    process.execPath,
    [
      ...nodeArgs,
      cli,
      "mirror",
      `gs://${B}/${prefix}`,
      dir,
      "--emulator",
      emu.baseUrl,
      "--concurrency",
      String(concurrency),
      "--quiet",
    ],
    { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, stdout, stderr })),
  );
  return { child, done };
}

before(async () => {
  assert.ok(SIZE >= THREAD_MIN_BYTES, "these objects go to the stage thread");
  assert.ok(SIZE >= DIRECT_MIN_BYTES && SIZE % 4096 !== 0, "written directly, the last block padded");
  emu = await startEmulator();
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-stage-thread-"));
  emu.store.createBucket({ name: B, projectNumber: "1" });
  for (let i = 0; i < N; i++) {
    const uid = `1.2.276.0.7230010.3.1.2.8323329.${i}`;
    const name = `train/${uid}/${uid}.3/${uid}.4.dcm`;
    const data = content(i);
    objects.set(name, data);
    emu.store.putObject(B, name, data, "application/dicom");
  }
});
after(async () => {
  await emu.close();
  await rm(tmp, { recursive: true, force: true });
});

describe("a cold copy of SIIM-sized objects through the built CLI", () => {
  test("lands every object byte for byte, with far fewer full collections than V8's own marking schedule", async () => {
    const count = (out: string) => out.split("\n").filter((l) => l.includes("Mark-Compact")).length;
    const late = await run(path.join(tmp, "late"), {}, ["--trace-gc"]).done;
    assert.equal(late.code, 0, late.stderr);
    await assertMirrored(path.join(tmp, "late"));
    const v8 = await run(path.join(tmp, "v8"), { HCX_MARKING_TRIGGER: "v8" }, ["--trace-gc"]).done;
    assert.equal(v8.code, 0, v8.stderr);
    await assertMirrored(path.join(tmp, "v8"));
    // Measured at 1,500 × 150 KB: 19–22 with V8's schedule, 4–6 with late marking.
    assert.ok(
      count(late.stdout) * 3 <= count(v8.stdout) * 2,
      `full collections: ${count(late.stdout)} late, ${count(v8.stdout)} V8's`,
    );
    process.stdout.write(
      `# full collections, ${N} × ${SIZE} B: ${count(late.stdout)} late, ${count(v8.stdout)} on V8's schedule\n`,
    );
  });

  test("HCX_DIRECT_IO=all writes them with direct I/O: every byte lands, none of them through the page cache (by default: all of them)", async (t) => {
    const direct = path.join(tmp, "direct");
    const buffered = path.join(tmp, "buffered");
    const d = await run(direct, { HCX_DIRECT_IO: "all" }).done;
    assert.equal(d.code, 0, d.stderr);
    const b = await run(buffered).done;
    assert.equal(b.code, 0, b.stderr);
    // Read before the files are: assertMirrored's reads fill the cache.
    const dcm = async (dir: string) =>
      (await files(dir)).filter((f) => f.endsWith(".dcm")).map((f) => path.join(dir, f));
    const inCache = { direct: residentBytes(await dcm(direct)), buffered: residentBytes(await dcm(buffered)) };
    await assertMirrored(direct);
    await assertMirrored(buffered);
    if (inCache.direct === undefined || inCache.buffered === undefined) return t.skip("no fincore (util-linux)");
    const total = N * SIZE;
    // The default run shows the measurement sees the cache: its bytes are all there, synced but kept.
    assert.ok(inCache.buffered >= total * 0.9, `buffered: ${inCache.buffered} of ${total} bytes cached`);
    const probe = path.join(tmp, "probe");
    const takesDirect = createMaybeDirectSync(
      probe,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      0o644,
      true,
    );
    closeSync(takesDirect.fd);
    if (!takesDirect.direct) return t.skip("this file system refuses O_DIRECT");
    assert.ok(inCache.direct <= total * 0.01, `direct: ${inCache.direct} of ${total} bytes cached`);
  });

  test("--concurrency is the requests in flight: with 40 ms per response, exactly 8 at the peak, never more", async () => {
    // The transfer stage holds twice as many objects as connections (some making directories or
    // being written): what the server sees must still be the user's number.
    const lat = new Map<string, Buffer>();
    for (let i = 0; i < 64; i++) {
      const name = `lat/${i}/${i}.dcm`;
      lat.set(name, content(N + i));
      emu.store.putObject(B, name, lat.get(name)!, "application/dicom");
    }
    const dir = path.join(tmp, "latency");
    emu.faults = { ...noFaults, latencyMs: 40, pathFilter: "/download/" };
    emu.requests.clear();
    try {
      const r = await run(dir, {}, [], { prefix: "lat", concurrency: 8 }).done;
      assert.equal(r.code, 0, r.stderr);
    } finally {
      emu.faults = { ...noFaults };
    }
    assert.equal(emu.requests.mediaGets(), 64);
    assert.equal(emu.requests.peakInFlight("GET object.media"), 8, JSON.stringify(emu.requests.summary()));
    for (const [name, data] of lat) assert.ok(data.equals(await readFile(path.join(dir, name.slice(4)))), name);
    for (const name of lat.keys()) emu.store.deleteObject(B, name);
  });

  test("killed with SIGKILL while the stage thread writes, the next run walks, sweeps and fetches only what is missing", async () => {
    const dir = path.join(tmp, "sigkill");
    emu.faults = { ...noFaults, latencyMs: 5 };
    const { child, done } = run(dir);
    try {
      for (let i = 0; i < 400; i++) {
        await new Promise((r) => setTimeout(r, 25));
        const n = (await files(dir).catch(() => [])).filter((f) => f.endsWith(".dcm")).length;
        if (n >= 200) break;
      }
      child.kill("SIGKILL");
      await done;
    } finally {
      emu.faults = { ...noFaults };
    }
    const landed = (await files(dir)).filter((f) => f.endsWith(".dcm") && !f.includes(".hcx-tmp-")).length;
    assert.ok(landed >= 100 && landed < N, `landed ${landed}`);
    emu.requests.clear();
    const again = await run(dir, {}, []).done;
    assert.equal(again.code, 0, again.stderr);
    await assertMirrored(dir);
    // Verified files the killed run renamed but had no row for are re-hashed, never re-fetched.
    assert.ok(
      emu.requests.mediaGets() <= N - landed + 16,
      `fetched ${emu.requests.mediaGets()} of ${N - landed} missing`,
    );
    assert.ok(!(await files(dir)).some((f) => f.includes(".hcx-tmp-")), "the killed run's temp files are swept");
  });

  test("aborted while the stage thread holds objects, it leaves no temp file and the rerun fetches only the rest", async () => {
    const client = new HttpClient({});
    const source = () => gcsSource(client, emu.baseUrl);
    // Slow responses, few at a time: the abort lands while objects are on their way to the thread.
    emu.faults = { ...noFaults, latencyMs: 3 };
    try {
      // Aborted at several points (the window is a few ms wide): each must leave no temp file.
      for (const at of [40, 90, 140, 190, 240, 290]) {
        const dir = path.join(tmp, `abort-${at}`);
        const controller = new AbortController();
        let landed = 0;
        await assert.rejects(
          mirror({
            source: source(),
            bucket: B,
            prefix: "train",
            dest: dir,
            concurrency: 4,
            signal: controller.signal,
            onEvent: (e) => {
              if (e.kind === "mirror.file" && e.action === "downloaded" && ++landed === at)
                controller.abort(new Error("interrupted"));
            },
          }),
        );
        assert.deepEqual(
          (await files(dir)).filter((f) => f.includes(".hcx-tmp-")),
          [],
          `aborted at ${at}: every staged temp file is renamed or removed`,
        );
      }
      emu.faults = { ...noFaults };
      const dir = path.join(tmp, "abort-290");
      emu.requests.clear();
      const s = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir });
      assert.equal(s.failed + s.refused, 0);
      assert.ok(s.skipped >= 290, `skipped ${s.skipped}`);
      assert.equal(emu.requests.mediaGets(), s.downloaded);
      await assertMirrored(dir);
    } finally {
      emu.faults = { ...noFaults };
      await client.close();
    }
  });
});
