import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { acquireLock, processIsAlive } from "../../src/workflow/lock.ts";
import { LockHeldError } from "../../src/core/errors.ts";

describe("acquireLock", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-lock-"));
  after(() => rm(dir, { recursive: true, force: true }));

  test("a second acquirer gets exit 6 naming the holder's pid and start time", async () => {
    const lockPath = path.join(dir, "a", "lock");
    const lock = await acquireLock(lockPath, { command: "run config/x.json" });
    await assert.rejects(acquireLock(lockPath, { pid: 999_999_999 }), (e) => {
      assert.ok(e instanceof LockHeldError);
      assert.equal(e.exitCode, 6);
      assert.match(e.message, new RegExp(`pid ${process.pid}`));
      assert.match(e.message, new RegExp(lock.owner.startedAt.replace(/[.]/g, "\\.")));
      return true;
    });
    await lock.release();
    const again = await acquireLock(lockPath);
    await again.release();
    assert.deepEqual(await readdir(path.dirname(lockPath)), []);
  });

  test("a lock left by a SIGKILLed process is taken over", async () => {
    const lockPath = path.join(dir, "b", "lock");
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    const pid = child.pid!;
    await acquireLock(lockPath, { pid, command: "child" });
    await assert.rejects(acquireLock(lockPath), LockHeldError);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.equal(processIsAlive(pid), false);
    const lock = await acquireLock(lockPath);
    assert.equal(JSON.parse(await readFile(lockPath, "utf8")).pid, process.pid);
    await lock.release();
  });

  test("an unreadable lock file is treated as stale; a foreign host's lock is taken over once its heartbeat is old", async () => {
    const lockPath = path.join(dir, "c", "lock");
    const foreign = await acquireLock(lockPath, { host: "other-host", pid: 1, staleAfterMs: 300 });
    await assert.rejects(acquireLock(lockPath), /other-host.*refreshed the lock 0 s ago/);
    // Its heartbeat keeps it alive past the bound; once the holder stops beating, it is taken over.
    await new Promise((r) => setTimeout(r, 400));
    await assert.rejects(acquireLock(lockPath, { staleAfterMs: 300 }), LockHeldError);
    const content = await readFile(lockPath, "utf8");
    await foreign.release();
    await writeFile(lockPath, content);
    const old = new Date(Date.now() - 5000);
    await utimes(lockPath, old, old);
    const taken = await acquireLock(lockPath, { staleAfterMs: 300 });
    assert.match(taken.tookOver ?? "", /other-host \(another host\) has not refreshed the lock for 5 s/);
    await taken.release();
    await writeFile(lockPath, "garbage");
    const lock = await acquireLock(lockPath);
    assert.equal(lock.tookOver, "the lock file is unreadable");
    await lock.release();
  });

  test("a holder whose lock was taken over meanwhile learns it at the next heartbeat, and leaves the new lock alone", async () => {
    const lockPath = path.join(dir, "e", "lock");
    const lock = await acquireLock(lockPath, { staleAfterMs: 200 }); // heartbeat every 50 ms
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(lock.lost.aborted, false, "its own heartbeats do not count as a loss");
    const theirs = `${JSON.stringify({ pid: 1, host: "other-host", startedAt: new Date().toISOString(), command: "x" })}\n`;
    await writeFile(lockPath, theirs);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(lock.lost.aborted, true);
    assert.ok(lock.lost.reason instanceof LockHeldError);
    await lock.release();
    assert.equal(await readFile(lockPath, "utf8"), theirs);
  });

  test("many concurrent contenders: exactly one wins", async () => {
    const lockPath = path.join(dir, "d", "lock");
    await acquireLock(lockPath, { pid: 999_999_998 }); // stale: that pid does not exist
    const results = await Promise.allSettled(
      Array.from({ length: 16 }, (_, i) =>
        acquireLock(lockPath, { pid: process.pid, command: `c${i}`, isAlive: (p) => p !== 999_999_998 }),
      ),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.ok(
      results
        .filter((r) => r.status === "rejected")
        .every((r) => (r as PromiseRejectedResult).reason instanceof LockHeldError),
    );
  });
});
