import assert from "node:assert/strict";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { SyncBudget, Writeback, type SyncFn } from "../../src/core/writeback.ts";

/** A sync that records its calls and ends only when the test says so. */
function heldSync() {
  const calls: number[] = [];
  const pending: Array<(err: NodeJS.ErrnoException | null) => void> = [];
  const sync: SyncFn = (fd, done) => {
    calls.push(fd);
    pending.push(done);
  };
  const finish = (err: NodeJS.ErrnoException | null = null) => pending.shift()!(err);
  return { sync, calls, pending, finish };
}

const tick = () => new Promise((r) => setImmediate(r));

describe("Writeback", () => {
  it("runs one sync per file at a time: kicks while one runs are dropped, the next kick starts another", async () => {
    const s = heldSync();
    const wb = new Writeback(7, s.sync, new SyncBudget(3));
    wb.kick();
    wb.kick();
    wb.kick();
    assert.deepEqual(s.calls, [7]);
    s.finish();
    await tick();
    wb.kick();
    assert.deepEqual(s.calls, [7, 7]);
    s.finish();
    await wb.idle();
  });

  it("shares a budget between files: past its limit a kick starts nothing, and a finished sync frees its place", async () => {
    const s = heldSync();
    const budget = new SyncBudget(2);
    const files = [10, 11, 12].map((fd) => new Writeback(fd, s.sync, budget));
    for (const f of files) f.kick();
    assert.deepEqual(s.calls, [10, 11]);
    assert.equal(budget.running, 2);
    s.finish();
    await tick();
    assert.equal(budget.running, 1);
    files[2]!.kick();
    assert.deepEqual(s.calls, [10, 11, 12]);
    s.finish();
    s.finish();
    await Promise.all(files.map((f) => f.idle()));
    assert.equal(budget.running, 0);
  });

  it("idle waits for the sync in flight", async () => {
    const s = heldSync();
    const wb = new Writeback(3, s.sync, new SyncBudget(1));
    wb.kick();
    let idle = false;
    const waiting = wb.idle().then(() => (idle = true));
    await tick();
    assert.equal(idle, false, "idle returned with a sync still running on the descriptor");
    s.finish();
    await waiting;
    assert.equal(idle, true);
  });

  it("keeps a background sync's error for idle (the kernel reports it once per descriptor) and starts no more syncs", async () => {
    const s = heldSync();
    const budget = new SyncBudget(1);
    const wb = new Writeback(5, s.sync, budget);
    wb.kick();
    const eio = Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", errno: -5 });
    s.finish(eio);
    await tick();
    assert.equal(budget.running, 0, "a failed sync gave its place back");
    wb.kick();
    assert.deepEqual(s.calls, [5], "no sync after one failed");
    await assert.rejects(wb.idle(), (err: NodeJS.ErrnoException) => err.code === "EIO");
    await assert.rejects(
      wb.idle(),
      (err: NodeJS.ErrnoException) => err.code === "EIO",
      "the error is kept, not consumed",
    );
  });

  it("with the real fdatasync, syncs a file being written and leaves its bytes alone", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-writeback-"));
    try {
      const file = path.join(dir, "f");
      const fd = openSync(file, "w");
      const budget = new SyncBudget(3);
      const wb = new Writeback(fd, undefined, budget);
      const chunk = Buffer.alloc(1 << 20, 0x5a);
      for (let i = 0; i < 8; i++) {
        writeSync(fd, chunk);
        wb.kick();
      }
      await wb.idle();
      assert.equal(budget.running, 0);
      closeSync(fd);
      const got = readFileSync(file);
      assert.equal(got.byteLength, 8 << 20);
      assert.ok(got.every((b) => b === 0x5a));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
