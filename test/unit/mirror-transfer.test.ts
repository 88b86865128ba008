import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import type { Barrier } from "../../src/core/barrier.ts";
import { systemClock } from "../../src/core/clock.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { CommitQueue } from "../../src/mirror/commit-queue.ts";
import { downloadObject, type DownloadContext } from "../../src/mirror/download.ts";
import { Manifest } from "../../src/mirror/manifest.ts";
import type { MirrorEvent } from "../../src/mirror/mirror-types.ts";
import type { RemoteObject, RemoteSource } from "../../src/mirror/ports.ts";
import { MirrorTally } from "../../src/mirror/tally.ts";
import { transferOne } from "../../src/mirror/transfer.ts";

const data = Buffer.from("object bytes for the transfer stage");
const obj: RemoteObject = { name: "p/s/f.dcm", size: data.length, generation: "3", crc32c: crc32cBase64(data) };
const fastRetry = { retries: 3, backoff: { initialMs: 1, maxMs: 2, multiplier: 2, jitter: "none" as const } };

function sourceOf(bodies: Buffer[]): RemoteSource & { opens: number } {
  const s = {
    opens: 0,
    listPages: () => assert.fail("not used"),
    open: async () => {
      const b = bodies[Math.min(s.opens++, bodies.length - 1)]!;
      return (async function* () {
        yield b;
      })();
    },
  };
  return s as unknown as RemoteSource & { opens: number };
}

async function setup(source: RemoteSource) {
  const dest = await mkdtemp(path.join(os.tmpdir(), "hcx-transfer-"));
  const ctx: DownloadContext = {
    source,
    bucket: "b",
    dest,
    guard: new DirectoryGuard(dest),
    clock: systemClock,
    retry: fastRetry,
  };
  return { dest, ctx };
}

test("transfer stage: downloadObject leaves a verified temp file and nothing under the final name", async () => {
  const src = sourceOf([Buffer.from("corrupt bytes for the transfer stag"), data]);
  const { dest, ctx } = await setup(src);
  try {
    const staged = await downloadObject(ctx, obj, "s/f.dcm");
    assert.equal(src.opens, 2, "the corrupt body was retried");
    assert.equal(staged.path, path.join(dest, "s/f.dcm"));
    assert.ok(!existsSync(staged.path));
    assert.ok(path.basename(staged.temp).includes(TEMP_MARKER));
    assert.deepEqual(readFileSync(staged.temp), data);
    assert.deepEqual(await readdir(path.join(dest, "s")), [path.basename(staged.temp)], "one temp, no leftovers");
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});

test("transferOne: the row and the 'downloaded' event come only after the batch's barriers and rename", async () => {
  const { dest, ctx } = await setup(sourceOf([data]));
  const manifest = Manifest.open(dest);
  const events: MirrorEvent[] = [];
  const tally = new MirrorTally(
    (e) => events.push(e),
    systemClock,
    () => manifest.flush(),
  );
  const order: string[] = [];
  const barrier: Barrier = {
    kind: "fdatasync",
    data: async () => void order.push(`data: final ${existsSync(path.join(dest, "s/f.dcm"))}`),
    names: async () => void order.push(`names: final ${existsSync(path.join(dest, "s/f.dcm"))}`),
  };
  const queue = new CommitQueue({ barrier, maxFiles: 10, maxDelayMs: 60_000, onBatch: () => tally.flush() });
  try {
    await transferOne({ rel: "s/f.dcm", obj }, undefined, ctx, manifest, queue, tally, false);
    assert.equal(manifest.get("s/f.dcm"), undefined, "no row before the commit");
    assert.equal(tally.s.downloaded, 0);
    assert.ok(!events.some((e) => e.kind === "mirror.file"), "no 'downloaded' before the commit");
    await queue.flush();
    assert.deepEqual(order, ["data: final false", "names: final true"]);
    assert.equal(manifest.get("s/f.dcm")?.generation, "3");
    assert.equal(tally.s.downloaded, 1);
    assert.equal(tally.s.bytes, data.length);
    assert.deepEqual(
      events.filter((e) => e.kind === "mirror.file"),
      [{ kind: "mirror.file", name: obj.name, action: "downloaded", bytes: data.length }],
    );
    assert.deepEqual(readFileSync(path.join(dest, "s/f.dcm")), data);

    // A rerun finds the file vouched for by its row: skipped, no request.
    const again = new MirrorTally(
      () => {},
      systemClock,
      () => {},
    );
    const src2 = sourceOf([data]);
    await transferOne(
      { rel: "s/f.dcm", obj },
      { rel: "s/f.dcm", type: "file" },
      { ...ctx, source: src2 },
      manifest,
      queue,
      again,
      false,
    );
    assert.equal(src2.opens, 0);
    assert.equal(again.s.skipped, 1);
  } finally {
    manifest.close();
    await rm(dest, { recursive: true, force: true });
  }
});

test("transferOne: a file on disk without a row is hashed; equal → its row waits for the barrier, torn → re-downloaded", async () => {
  const src = sourceOf([data]);
  const { dest, ctx } = await setup(src);
  const manifest = Manifest.open(dest);
  const tally = new MirrorTally(
    () => {},
    systemClock,
    () => manifest.flush(),
  );
  let barriers = 0;
  const barrier: Barrier = { kind: "fdatasync", data: async () => void barriers++, names: async () => {} };
  const queue = new CommitQueue({ barrier, maxFiles: 10, maxDelayMs: 60_000 });
  const local = { rel: "s/f.dcm", type: "file" as const };
  try {
    await mkdir(path.join(dest, "s"));
    await writeFile(path.join(dest, "s/f.dcm"), data);
    await transferOne({ rel: "s/f.dcm", obj }, local, ctx, manifest, queue, tally, false);
    assert.equal(src.opens, 0, "equal bytes are not downloaded");
    assert.equal(manifest.get("s/f.dcm"), undefined, "the proven row waits for the barrier");
    await queue.flush();
    assert.equal(barriers, 1);
    assert.equal(manifest.get("s/f.dcm")?.generation, "3");
    assert.deepEqual([tally.s.hashed, tally.s.skipped, tally.s.downloaded], [1, 1, 0]);

    // Torn: same size, wrong bytes, no row (e.g. a power loss under --no-fsync).
    manifest.remove("s/f.dcm");
    await writeFile(path.join(dest, "s/f.dcm"), Buffer.alloc(data.length));
    await transferOne({ rel: "s/f.dcm", obj }, local, ctx, manifest, queue, tally, false);
    await queue.flush();
    assert.equal(src.opens, 1);
    assert.deepEqual([tally.s.hashed, tally.s.downloaded], [2, 1]);
    assert.deepEqual(readFileSync(path.join(dest, "s/f.dcm")), data);
  } finally {
    manifest.close();
    await rm(dest, { recursive: true, force: true });
  }
});

test("transferOne: a commit that fails on a full disk is a destination fault, not a download", async () => {
  const { dest, ctx } = await setup(sourceOf([data]));
  const manifest = Manifest.open(dest);
  const tally = new MirrorTally(
    () => {},
    systemClock,
    () => {},
  );
  const enospc = Object.assign(new Error("no space"), { code: "ENOSPC" });
  const barrier: Barrier = { kind: "fdatasync", data: () => Promise.reject(enospc), names: async () => {} };
  const queue = new CommitQueue({ barrier, maxFiles: 1 });
  try {
    await transferOne({ rel: "s/f.dcm", obj }, undefined, ctx, manifest, queue, tally, false);
    await queue.flush();
    assert.equal(tally.s.downloaded, 0);
    assert.match(tally.s.destinationFault ?? "", /^ENOSPC/);
    assert.ok(tally.stopped);
    assert.deepEqual(await readdir(path.join(dest, "s")), [], "the temp file is removed");
  } finally {
    manifest.close();
    await rm(dest, { recursive: true, force: true });
  }
});
