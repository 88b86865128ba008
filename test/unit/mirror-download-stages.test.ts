import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { StagedFile } from "../../src/core/atomic-file.ts";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { systemClock } from "../../src/core/clock.ts";
import { UnsafeNameError } from "../../src/core/errors.ts";
import { Gate } from "../../src/core/gate.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { createStager, type Stager, type StageJob } from "../../src/core/stage-pool.ts";
import { downloadObject, type DownloadContext } from "../../src/mirror/download.ts";
import type { RemoteObject, RemoteSource } from "../../src/mirror/ports.ts";

/**
 * The transfer stage's two halves (issue #11): a connection is held from the request until the
 * body is in, never while the object is verified and written; and an object a stage thread writes
 * gets its directories made there, not by the main thread before the request.
 */

const bodyOf = (i: number) => Buffer.alloc(1000 + i, i + 1);
const objectOf = (i: number): RemoteObject => ({
  name: `p/s${i}/f.dcm`,
  size: bodyOf(i).length,
  generation: "1",
  crc32c: crc32cBase64(bodyOf(i)),
});

/** A source serving `bodyOf(i)` for `p/s{i}/f.dcm`, counting requests and bodies not yet fully read. */
function source(onOpen: (name: string) => void = () => {}) {
  const s = { opens: 0, open: 0, peakOpen: 0 };
  const src = {
    listPages: () => assert.fail("not used"),
    open: async (_bucket: string, o: RemoteObject) => {
      onOpen(o.name);
      s.opens++;
      s.peakOpen = Math.max(s.peakOpen, ++s.open);
      const i = Number(/s(\d+)\//.exec(o.name)![1]);
      return (async function* () {
        await new Promise((r) => setImmediate(r));
        yield bodyOf(i);
        s.open--;
      })();
    },
  } as unknown as RemoteSource;
  return { s, src };
}

/** The in-thread stager, with each `stage` held until `release()`; `offThread` as told. */
function heldStager(offThread = false) {
  const inner = createStager(0);
  const held: Array<() => void> = [];
  let staging = 0;
  const stager: Stager = {
    lease: (size) => inner.lease(size),
    offThread: () => offThread,
    get lost() {
      return false;
    },
    close: () => inner.close(),
    stage: async (job: StageJob): Promise<StagedFile> => {
      staging++;
      await new Promise<void>((r) => held.push(r));
      staging--;
      return inner.stage(job);
    },
  };
  return { stager, held, staging: () => staging };
}

async function context(src: RemoteSource, extra: Partial<DownloadContext>) {
  const dest = await mkdtemp(path.join(os.tmpdir(), "hcx-stages-"));
  const ctx: DownloadContext = {
    source: src,
    bucket: "b",
    dest,
    guard: new DirectoryGuard(dest),
    clock: systemClock,
    ...extra,
  };
  return { dest, ctx };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

test("one connection: each next request goes out while the objects before it wait to be written, never two bodies at once", async () => {
  const { s, src } = source();
  const h = heldStager();
  const { dest, ctx } = await context(src, { connections: new Gate(1), stager: h.stager });
  try {
    const downloads = [0, 1, 2].map((i) => downloadObject(ctx, objectOf(i), `s${i}/f.dcm`));
    // All three bodies are in while none has been written: the write never held the connection.
    await until(() => h.staging() === 3, "three objects waiting to be written");
    assert.equal(s.opens, 3);
    assert.equal(s.peakOpen, 1, "one request at a time");
    assert.equal((ctx.connections as Gate).inUse, 0, "no connection held by an object being written");
    for (const r of h.held.splice(0)) r();
    const staged = await Promise.all(downloads);
    staged.forEach((f, i) => assert.deepEqual(readFileSync(f.temp), bodyOf(i)));
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});

test("directories: made before the request when the calling thread writes the object, left to the stage thread otherwise", async () => {
  for (const offThread of [false, true]) {
    const seen: boolean[] = [];
    let dest = "";
    const { src } = source((name) => seen.push(existsSync(path.join(dest, name.slice(2, name.lastIndexOf("/"))))));
    const h = heldStager(offThread);
    const c = await context(src, { stager: h.stager });
    dest = c.dest;
    try {
      const d = downloadObject(c.ctx, objectOf(7), "s7/f.dcm");
      await until(() => h.staging() === 1, "the object waiting to be written");
      assert.deepEqual(seen, [!offThread], `offThread ${offThread}: directory there at the request`);
      h.held.splice(0).forEach((r) => r());
      assert.deepEqual(readFileSync((await d).temp), bodyOf(7));
      assert.ok(existsSync(path.join(dest, "s7")), "made by whoever wrote the object");
    } finally {
      await rm(dest, { recursive: true, force: true });
    }
  }
});

test("a stage thread refuses a file in the way of a directory it has to make: nothing written, not retried", async () => {
  const { s, src } = source();
  const stager = createStager(1, 0);
  const { dest, ctx } = await context(src, { stager, connections: new Gate(4) });
  try {
    assert.equal(stager.offThread(objectOf(3).size), true);
    await writeFile(path.join(dest, "s3"), "a file where the object's directory goes");
    await assert.rejects(downloadObject(ctx, objectOf(3), "s3/f.dcm"), (e: unknown) => {
      assert.ok(e instanceof UnsafeNameError, String(e));
      return true;
    });
    assert.equal(s.opens, 1, "one request: a refusal is not retried");
    assert.deepEqual(await readdir(dest), ["s3"]);
    assert.equal(readFileSync(path.join(dest, "s3"), "utf8"), "a file where the object's directory goes");
  } finally {
    await stager.close();
    await rm(dest, { recursive: true, force: true });
  }
});

test("a source with `receive`: small objects are copied into the stager's lease by it (never `open`ed), retried like a stream", async () => {
  const calls: string[] = [];
  let failFirst = true;
  const src = {
    listPages: () => assert.fail("not used"),
    open: () => assert.fail("a small object was opened as a stream"),
    receive: async (_bucket: string, o: RemoteObject, into: Uint8Array) => {
      calls.push(o.name);
      const i = Number(/s(\d+)\//.exec(o.name)![1]);
      assert.equal(into.byteLength, o.size, "the lease is exactly the object's size");
      into.set(bodyOf(i));
      if (failFirst) {
        failFirst = false;
        throw Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" });
      }
    },
  } as unknown as RemoteSource;
  const { dest, ctx } = await context(src, {
    stager: createStager(0),
    retry: { retries: 2, backoff: { initialMs: 1, maxMs: 2, multiplier: 2, jitter: "equal" } },
  });
  try {
    const staged = await downloadObject(ctx, objectOf(3), "s3/f.dcm");
    assert.deepEqual(readFileSync(staged.temp), bodyOf(3));
    assert.deepEqual(calls, ["p/s3/f.dcm", "p/s3/f.dcm"], "received twice: the reset attempt, then the good one");
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});
