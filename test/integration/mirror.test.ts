import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, symlink, mkdir, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
import { getEventListeners } from "node:events";
import os from "node:os";
import path from "node:path";
import { PassThrough, Writable } from "node:stream";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { gcsSource } from "../../src/gcp/gcs-objects.ts";
import { mirror, type MirrorEvent } from "../../src/mirror/mirror.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { HttpError } from "../../src/core/errors.ts";
import type { RemoteSource } from "../../src/mirror/ports.ts";
import { runCli } from "../../src/cli/run-cli.ts";

const fastRetry = { retries: 12, backoff: { initialMs: 5, maxMs: 50, multiplier: 2, jitter: "equal" as const } };
let emu: RunningEmulator;
let client: HttpClient;
let tmp: string;
const B = "mirror-bucket";
const objects = new Map<string, Buffer>();

function content(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j++) b[j] = (i * 131 + j * 7) & 0xff;
  return b;
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out.sort();
}

async function assertMirrored(dir: string): Promise<void> {
  for (const [name, data] of objects)
    assert.deepEqual(await readFile(path.join(dir, name.slice("train/".length))), data, name);
  const all = await files(dir);
  assert.deepEqual(
    all.filter((f) => !f.startsWith(".hcexport/")),
    [...objects.keys()].map((n) => n.slice("train/".length)).sort(),
  );
  assert.ok(!all.some((f) => f.includes(".hcx-tmp-")), "no temp files left");
}

before(async () => {
  emu = await startEmulator();
  client = new HttpClient({ retry: fastRetry });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-mirror-"));
  emu.store.createBucket({ name: B, projectNumber: "1" });
  for (let i = 0; i < 300; i++) {
    const name = `train/s${i % 17}/se${i}/i${i}.dcm`;
    const data = content(i, 1000 + ((i * 997) % 30_000));
    objects.set(name, data);
    emu.store.putObject(B, name, data, "application/dicom");
  }
  emu.store.putObject(B, "other/not-mine.dcm", Buffer.from("x"), "application/dicom");
});
after(async () => {
  await client.close();
  await emu.close();
  await rm(tmp, { recursive: true, force: true });
});

const source = () => gcsSource(client, emu.baseUrl);

describe("mirror", () => {
  test("byte-identical under injected faults, no partial or temp files", async () => {
    const dir = path.join(tmp, "faults");
    emu.faults = {
      ...noFaults,
      rate503: 0.05,
      rate429: 0.05,
      resetRate: 0.02,
      truncateRate: 0.01,
      corruptRate: 0.01,
      seed: 11,
    };
    const events: MirrorEvent[] = [];
    try {
      const s = await mirror({
        source: source(),
        bucket: B,
        prefix: "train",
        dest: dir,
        concurrency: 16,
        retry: fastRetry,
        onEvent: (e) => events.push(e),
        fsync: false,
      });
      assert.equal(s.listed, 300);
      assert.equal(s.downloaded, 300);
      assert.equal(s.failed + s.refused, 0, JSON.stringify(s.failures));
    } finally {
      emu.faults = { ...noFaults };
    }
    assert.ok(events.filter((e) => e.kind === "mirror.retry").length > 0, "faults were injected and retried");
    await assertMirrored(dir);
  });

  test("re-sync after a re-export of identical bytes downloads nothing", async () => {
    const dir = path.join(tmp, "faults");
    for (const [name, data] of objects) emu.store.putObject(B, name, data, "application/dicom"); // new generations, same bytes
    emu.requests.clear();
    const s = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry });
    assert.deepEqual([s.downloaded, s.skipped], [0, 300]);
    assert.equal(emu.requests.mediaGets(), 0);
    // A changed object is downloaded again, alone.
    const changed = [...objects.keys()][7]!;
    objects.set(changed, Buffer.from("changed content"));
    emu.store.putObject(B, changed, objects.get(changed)!, "application/dicom");
    const again = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry });
    assert.deepEqual([again.downloaded, again.skipped], [1, 299]);
    await assertMirrored(dir);
  });

  test("an interrupted mirror resumes without re-downloading finished files", async () => {
    const dir = path.join(tmp, "resume");
    const controller = new AbortController();
    let landed = 0;
    emu.faults = { ...noFaults, latencyMs: 5 };
    await assert.rejects(
      mirror({
        source: source(),
        bucket: B,
        prefix: "train",
        dest: dir,
        concurrency: 4,
        retry: fastRetry,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.kind === "mirror.file" && e.action === "downloaded" && ++landed === 120)
            controller.abort(new Error("interrupted"));
        },
      }),
    );
    emu.faults = { ...noFaults };
    assert.ok((await files(dir)).every((f) => !f.includes(".hcx-tmp-")));
    emu.requests.clear();
    const s = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry });
    assert.ok(s.skipped >= 120, `skipped ${s.skipped}`);
    assert.equal(s.downloaded + s.skipped, 300);
    assert.equal(emu.requests.mediaGets(), s.downloaded);
    await assertMirrored(dir);
  });

  test("a long-lived signal (a library caller's): listened to while a mirror runs, no listener left after it", async () => {
    const run = new AbortController();
    let during = 0;
    for (const k of [0, 1]) {
      const s = await mirror({
        source: source(),
        bucket: B,
        prefix: "train",
        dest: path.join(tmp, `signal${k}`),
        concurrency: 4,
        retry: fastRetry,
        signal: run.signal,
        onEvent: (e) => {
          if (e.kind === "mirror.file") during = Math.max(during, getEventListeners(run.signal, "abort").length);
        },
      });
      assert.equal(s.downloaded, 300);
      assert.equal(getEventListeners(run.signal, "abort").length, 0, `after mirror ${k}`);
    }
    assert.ok(during > 0, "the mirror listens to the signal while it runs");
  });

  test("--shard K/3 over three runs covers every object exactly once", async () => {
    const seen = new Map<string, number>();
    for (let k = 0; k < 3; k++) {
      const dir = path.join(tmp, `shard${k}`);
      const s = await mirror({
        source: source(),
        bucket: B,
        prefix: "train",
        dest: dir,
        shard: { index: k, count: 3 },
        retry: fastRetry,
      });
      assert.ok(s.downloaded > 50, `shard ${k} got ${s.downloaded}`);
      for (const f of await files(dir)) if (!f.startsWith(".hcexport/")) seen.set(f, (seen.get(f) ?? 0) + 1);
    }
    assert.equal(seen.size, 300);
    assert.ok([...seen.values()].every((n) => n === 1));
  });

  test("dry run lists what it would do and writes nothing", async () => {
    const dir = path.join(tmp, "dry");
    const events: MirrorEvent[] = [];
    const s = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      dryRun: true,
      onEvent: (e) => events.push(e),
    });
    assert.equal(s.downloaded, 0);
    assert.equal(events.filter((e) => e.kind === "mirror.file" && e.action === "would-download").length, 300);
    await assert.rejects(readdir(dir), { code: "ENOENT" });
  });
});

describe("--delete", () => {
  test("removes exactly the destination-only files, and only after a clean run", async () => {
    const dir = path.join(tmp, "delete");
    const first = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      retry: fastRetry,
      fsync: false,
    });
    assert.equal(first.downloaded, 300);
    await writeFile(path.join(dir, "extra.txt"), "x");
    await mkdir(path.join(dir, "s1", "gone"), { recursive: true });
    await writeFile(path.join(dir, "s1", "gone", "old.dcm"), "x");
    await writeFile(path.join(dir, "s1-"), "sorts before s1/");
    // Without --delete, extra files stay.
    const keep = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry });
    assert.deepEqual([keep.deleted, keep.skipped], [0, 300]);
    assert.equal(await readFile(path.join(dir, "extra.txt"), "utf8"), "x");

    // A download that fails (a non-retryable 403 for one object) blocks every delete.
    const failing: RemoteSource = {
      listPages: (b, p, sig) => source().listPages(b, p, sig),
      open: async (b, o, sig) => {
        if (o.name.endsWith("/i7.dcm"))
          throw new HttpError({ status: 403, method: "GET", url: "http://x", message: "forbidden" });
        return source().open(b, o, sig);
      },
    };
    const changed = [...objects.keys()].find((n) => n.endsWith("/i7.dcm"))!;
    emu.store.putObject(B, changed, Buffer.from("new bytes for i7"), "application/dicom");
    const blocked = await mirror({
      source: failing,
      bucket: B,
      prefix: "train",
      dest: dir,
      delete: true,
      retry: fastRetry,
    });
    assert.equal(blocked.failed, 1);
    assert.equal(blocked.deleted, 0);
    assert.match(blocked.deleteSkipped ?? "", /failed/);
    assert.equal(await readFile(path.join(dir, "extra.txt"), "utf8"), "x");

    // --max-delete below the count: nothing goes.
    const guarded = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      delete: true,
      maxDelete: 2,
      retry: fastRetry,
    });
    assert.equal(guarded.downloaded, 1);
    assert.equal(guarded.deleted, 0);
    assert.match(guarded.deleteSkipped ?? "", /max-delete 2/);

    // Dry run: reports, deletes nothing.
    const dry = await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, delete: true, dryRun: true });
    assert.deepEqual([dry.wouldDelete, dry.deleted, dry.wouldDownload], [3, 0, 0]);

    const clean = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      delete: true,
      retry: fastRetry,
    });
    assert.deepEqual([clean.deleted, clean.downloaded, clean.failed], [3, 0, 0]);
    emu.store.putObject(B, changed, objects.get(changed)!, "application/dicom");
    const back = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      delete: true,
      retry: fastRetry,
    });
    assert.equal(back.downloaded, 1);
    assert.equal((await files(dir)).filter((f) => !f.startsWith(".hcexport/")).length, 300);
    await assertMirrored(dir);
  });

  test("with --shard, each shard deletes only files of its own partition", async () => {
    const dir = path.join(tmp, "shard-delete");
    await mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry, fsync: false });
    const extras = Array.from({ length: 12 }, (_, i) => `extra-${i}.txt`);
    for (const e of extras) await writeFile(path.join(dir, e), e);
    let deleted = 0;
    for (let k = 0; k < 3; k++) {
      const s = await mirror({
        source: source(),
        bucket: B,
        prefix: "train",
        dest: dir,
        delete: true,
        shard: { index: k, count: 3 },
        retry: fastRetry,
      });
      deleted += s.deleted;
      assert.equal(s.failed + s.refused, 0);
      assert.ok(s.deleted < 12, `shard ${k} deleted ${s.deleted}: only its own partition`);
    }
    assert.equal(deleted, 12);
    await assertMirrored(dir);
  });
});

describe("kill -9 mid-run", () => {
  test("a SIGKILLed mirror resumes without re-downloading finished files", async () => {
    const dir = path.join(tmp, "sigkill");
    emu.faults = { ...noFaults, latencyMs: 20 };
    const child = spawn(
      process.execPath,
      ["src/cli/main.ts", "mirror", `gs://${B}/train`, dir, "--emulator", emu.baseUrl, "--concurrency", "4", "--quiet"],
      { stdio: "ignore" },
    );
    try {
      for (let i = 0; i < 300; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const n = (await files(dir).catch(() => [])).filter(
          (f) => f.endsWith(".dcm") && !f.includes(".hcx-tmp-"),
        ).length;
        if (n >= 60) break;
      }
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    } finally {
      emu.faults = { ...noFaults };
    }
    const landed = (await files(dir)).filter((f) => f.endsWith(".dcm") && !f.includes(".hcx-tmp-")).length;
    assert.ok(landed >= 60 && landed < 300, `landed ${landed}`);
    emu.requests.clear();
    const s = await mirror({
      source: source(),
      bucket: B,
      prefix: "train",
      dest: dir,
      retry: fastRetry,
      staleTempMs: 0,
    });
    assert.equal(s.failed + s.refused, 0);
    assert.equal(s.walked, true, "the killed run's session row makes the next run walk (and sweep)");
    assert.equal(s.downloaded, 300 - landed, `only the missing files are fetched (hashed ${s.hashed})`);
    assert.equal(emu.requests.mediaGets(), s.downloaded);
    await assertMirrored(dir);
  });
});

describe("a re-sync after a clean run probes each name instead of walking DIR", () => {
  const run = (dir: string, extra: Partial<Parameters<typeof mirror>[0]> = {}) =>
    mirror({ source: source(), bucket: B, prefix: "train", dest: dir, retry: fastRetry, ...extra });

  test("walks only when it must: a new manifest, --delete, a run that did not end cleanly", async () => {
    const dir = path.join(tmp, "probe");
    assert.equal((await run(dir)).walked, true, "a new manifest has never seen a clean end");
    emu.requests.clear();
    const noop = await run(dir);
    assert.deepEqual([noop.walked, noop.downloaded, noop.skipped, noop.hashed], [false, 0, 300, 0]);
    assert.equal(emu.requests.mediaGets(), 0);
    // A changed local file and a deleted one are found by the probe alone.
    const [first, second] = [...objects.keys()].map((n) => n.slice("train/".length));
    await writeFile(path.join(dir, first!), "edited by hand");
    await rm(path.join(dir, second!));
    const repaired = await run(dir);
    assert.deepEqual([repaired.walked, repaired.downloaded, repaired.skipped], [false, 2, 298]);
    await assertMirrored(dir);

    // With --delete the walk is needed (destination-only files): it finds and deletes the extra.
    await writeFile(path.join(dir, "extra.dcm"), "not in the bucket");
    const kept = await run(dir);
    assert.equal(kept.walked, false);
    assert.equal(await readFile(path.join(dir, "extra.dcm"), "utf8"), "not in the bucket");
    const deleted = await run(dir, { delete: true });
    assert.deepEqual([deleted.walked, deleted.deleted], [true, 1]);
    await assertMirrored(dir);

    // An interrupted run leaves its row: the next one walks, and the one after it probes again.
    const controller = new AbortController();
    await writeFile(path.join(dir, first!), "edited again");
    await assert.rejects(
      run(dir, {
        signal: controller.signal,
        onEvent: (e) => {
          if (e.kind === "mirror.start") controller.abort(new Error("interrupted"));
        },
      }),
    );
    const after = await run(dir);
    assert.deepEqual([after.walked, after.downloaded], [true, 1]);
    assert.equal((await run(dir)).walked, false);
    await assertMirrored(dir);
  });

  test("a symlinked parent planted after a clean run is refused, never followed", async () => {
    const dir = path.join(tmp, "probe-link", "dest");
    const outside = path.join(tmp, "probe-link", "outside");
    await run(dir);
    const victims = [...objects.keys()].filter((n) => n.startsWith("train/s3/")).map((n) => n.slice("train/".length));
    // The same tree outside, with same-size files of other bytes: a followed link would hash them.
    for (const rel of victims) {
      await mkdir(path.dirname(path.join(outside, rel)), { recursive: true });
      await writeFile(path.join(outside, rel), Buffer.alloc(objects.get(`train/${rel}`)!.length, 0x5a));
    }
    await rm(path.join(dir, "s3"), { recursive: true });
    await symlink(path.join(outside, "s3"), path.join(dir, "s3"));
    emu.requests.clear();
    const s = await run(dir);
    assert.equal(s.walked, false);
    assert.deepEqual([s.refused, s.failed, s.hashed, s.skipped], [victims.length, 0, 0, 300 - victims.length]);
    for (const f of s.failures) assert.match(f.reason, /symlink/, f.name);
    for (const rel of victims)
      assert.deepEqual(
        await readFile(path.join(outside, rel)),
        Buffer.alloc(objects.get(`train/${rel}`)!.length, 0x5a),
      );
  });

  test("through the CLI: --json reports whether the destination was walked", async () => {
    const dir = path.join(tmp, "probe-cli");
    const walkedOf = async (): Promise<unknown> => {
      const child = spawn(
        process.execPath,
        ["src/cli/main.ts", "mirror", `gs://${B}/train`, dir, "--emulator", emu.baseUrl, "--json"],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      const code = await new Promise((r) => child.once("exit", r));
      assert.equal(code, 0, out);
      const done = out
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { kind: string; summary?: { walked: boolean; skipped: number } })
        .find((e) => e.kind === "mirror.done");
      return [done?.summary?.walked, done?.summary?.skipped];
    };
    assert.deepEqual(await walkedOf(), [true, 0]);
    assert.deepEqual(await walkedOf(), [false, 300]);
  });
});

describe("hostile object names", () => {
  const hostile = [
    "evil/../../escape.txt",
    "evil/a//b.txt",
    "evil/./dot.txt",
    "evil/a/.",
    "evil/dir/",
    "evil/back\\slash",
    "evil/nul\0byte",
    "evil/x/../../../escape2.txt",
    "evil/.hcexport/manifest.ndjson",
    "evil/clash",
    "evil/clash/child",
    "evil/link/x.txt",
  ];
  before(() => {
    for (const n of hostile) emu.store.putObject(B, n, Buffer.from(`hostile ${n}`), "text/plain");
    emu.store.putObject(B, "evil/good/ok.txt", Buffer.from("good"), "text/plain");
  });

  test("never escape, are refused and reported with exit 5, while good objects land", async () => {
    const dir = path.join(tmp, "hostile", "dest");
    const outside = path.join(tmp, "hostile", "outside");
    await mkdir(outside, { recursive: true });
    await mkdir(dir, { recursive: true });
    await symlink(outside, path.join(dir, "link"));
    const stdout = new PassThrough();
    let err = "";
    const stderr = new Writable({ write: (c, _e, cb) => ((err += String(c)), cb()) });
    let out = "";
    stdout.on("data", (c) => (out += String(c)));
    const code = await runCli(["mirror", `gs://${B}/evil`, dir, "--emulator", emu.baseUrl, "--concurrency", "4"], {
      stdout,
      stderr,
      env: {},
      cwd: tmp,
      signal: new AbortController().signal,
    });
    assert.equal(code, 5, err);
    assert.equal(await readFile(path.join(dir, "good", "ok.txt"), "utf8"), "good");
    assert.deepEqual(await readdir(outside), [], "nothing written through the planted symlink");
    await assert.rejects(readFile(path.join(tmp, "hostile", "escape.txt")), { code: "ENOENT" });
    await assert.rejects(readFile(path.join(tmp, "escape.txt")), { code: "ENOENT" });
    for (const name of hostile.filter((n) => !n.startsWith("evil/clash"))) {
      assert.ok(err.includes(JSON.stringify(name)), `reported: ${name}\n${err}`);
    }
    assert.match(err, /refused as unsafe names/);
    assert.match(out, /refused/);
    // Exactly one of the clashing pair landed; the other was refused, not silently dropped.
    const clash = await readFile(path.join(dir, "clash"), "utf8").catch(() => undefined);
    const child = await readFile(path.join(dir, "clash", "child"), "utf8").catch(() => undefined);
    assert.ok((clash === undefined) !== (child === undefined));
    assert.doesNotMatch(err, /✖ failed/, "clashes are refusals, not transfer failures");
  });
});
