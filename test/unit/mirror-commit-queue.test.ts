import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { stageVerified, type StagedFile } from "../../src/core/atomic-file.ts";
import { barrierFor, type Barrier } from "../../src/core/barrier.ts";
import { CommitQueue } from "../../src/mirror/commit-queue.ts";
import { withTempDir } from "../support/temp-dir.ts";

/** A barrier that records, at each call, which names exist: proves the order data → rename → names. */
function recordingBarrier(log: string[], fail?: { data?: Error; names?: Error }): Barrier {
  return {
    kind: "fdatasync",
    data: async (files) => {
      log.push(`data ${files.length} (${files.filter((f) => existsSync(f)).length} temps present)`);
      if (fail?.data !== undefined) throw fail.data;
    },
    names: async (dirs) => {
      log.push(`names ${[...dirs].length} dir(s)`);
      if (fail?.names !== undefined) throw fail.names;
    },
  };
}

const withDir = (fn: (dir: string) => Promise<void>) => withTempDir("hcx-cq-", fn);

const stage = (dir: string, rel: string, text = rel) => stageVerified(dir, rel, [Buffer.from(text)]);

describe("CommitQueue", () => {
  test("a full batch commits at once: data barrier over the temps, renames, names barrier, then committed", async () => {
    await withDir(async (dir) => {
      const log: string[] = [];
      let batchesSeen = 0;
      const q = new CommitQueue({
        barrier: recordingBarrier(log),
        maxFiles: 3,
        maxDelayMs: 60_000,
        onBatch: () => batchesSeen++,
      });
      const committed: string[] = [];
      for (const rel of ["a/1", "a/2", "b/3"]) {
        const staged = await stage(dir, rel);
        assert.ok(!existsSync(path.join(dir, rel)), "nothing under the final name before the commit");
        await q.add({
          staged,
          bytes: 1,
          committed: (w) => {
            // By now the file is under its final name and both barriers ran.
            assert.equal(readFileSync(w!.path, "utf8"), rel);
            assert.equal(log.length, 2);
            committed.push(rel);
          },
          failed: (err) => assert.fail(String(err)),
        });
      }
      await q.flush();
      assert.deepEqual(log, ["data 3 (3 temps present)", "names 2 dir(s)"]);
      assert.deepEqual(committed, ["a/1", "a/2", "b/3"]);
      assert.equal(batchesSeen, 1);
      assert.equal(q.batches, 1);
      assert.deepEqual((await readdir(path.join(dir, "a"))).sort(), ["1", "2"], "no temp files left");
    });
  });

  test("a partial batch commits after maxDelayMs, and maxBytes closes a batch early", async () => {
    await withDir(async (dir) => {
      const log: string[] = [];
      const q = new CommitQueue({ barrier: recordingBarrier(log), maxFiles: 100, maxBytes: 10, maxDelayMs: 30 });
      let done = 0;
      await q.add({ staged: await stage(dir, "x"), bytes: 1, committed: () => done++, failed: () => {} });
      assert.equal(done, 0);
      await new Promise((r) => setTimeout(r, 80));
      assert.equal(done, 1, "committed by the timer, without a flush");
      await q.add({ staged: await stage(dir, "y"), bytes: 10, committed: () => done++, failed: () => {} });
      await new Promise((r) => setImmediate(r));
      await q.flush();
      assert.equal(done, 2);
      assert.equal(q.batches, 2);
    });
  });

  test("a failed data barrier: nothing renamed, temps removed, every entry failed", async () => {
    await withDir(async (dir) => {
      const log: string[] = [];
      const eio = Object.assign(new Error("EIO"), { code: "EIO" });
      const q = new CommitQueue({ barrier: recordingBarrier(log, { data: eio }), maxFiles: 2 });
      const failed: unknown[] = [];
      for (const rel of ["p", "q"])
        await q.add({
          staged: await stage(dir, rel),
          bytes: 1,
          committed: () => assert.fail(),
          failed: (e) => failed.push(e),
        });
      await q.flush();
      assert.deepEqual(failed, [eio, eio]);
      assert.deepEqual(await readdir(dir), [], "neither final names nor temps");
    });
  });

  test("a rename clash fails only its entry; the rest of the batch commits", async () => {
    await withDir(async (dir) => {
      const q = new CommitQueue({ barrier: recordingBarrier([]), maxFiles: 10 });
      const clash = await stage(dir, "d");
      await stage(dir, "d/inner").then((s) =>
        q.add({ staged: s, bytes: 1, committed: () => {}, failed: (e) => assert.fail(String(e)) }),
      );
      await q.flush(); // d is now a directory
      const results: string[] = [];
      await q.add({
        staged: clash,
        bytes: 1,
        committed: () => results.push("d"),
        failed: (e) => results.push(String(e)),
      });
      await q.add({
        staged: await stage(dir, "e"),
        bytes: 1,
        committed: () => results.push("e"),
        failed: (e) => assert.fail(String(e)),
      });
      await q.flush();
      assert.equal(results.length, 2);
      assert.match(results[0]!, /exists as a directory/);
      assert.equal(results[1], "e");
      assert.deepEqual((await readdir(dir)).sort(), ["d", "e"]);
    });
  });

  test("a failed names barrier: files are in place but get no commit (the next run re-hashes them)", async () => {
    await withDir(async (dir) => {
      const err = new Error("names");
      const q = new CommitQueue({ barrier: recordingBarrier([], { names: err }), maxFiles: 1 });
      const got: unknown[] = [];
      await q.add({
        staged: await stage(dir, "f"),
        bytes: 1,
        committed: () => got.push("committed"),
        failed: (e) => got.push(e),
      });
      await q.flush();
      assert.deepEqual(got, [err]);
      assert.equal(readFileSync(path.join(dir, "f"), "utf8"), "f");
    });
  });

  test("entries without a temp file (proven by hash) still wait for the barrier", async () => {
    const log: string[] = [];
    const q = new CommitQueue({ barrier: recordingBarrier(log), maxFiles: 5 });
    let committed = false;
    await q.add({
      dir: os.tmpdir(),
      bytes: 0,
      committed: (w) => (committed = w === undefined && log.length === 2),
      failed: (e) => assert.fail(String(e)),
    });
    await q.flush();
    assert.ok(committed);
    assert.deepEqual(log, ["data 0 (0 temps present)", "names 1 dir(s)"]);
  });

  test("add waits while a full batch waits for the one committing (memory bounded)", async () => {
    await withDir(async (dir) => {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let dataCalls = 0;
      const barrier: Barrier = {
        kind: "fdatasync",
        data: async () => {
          if (++dataCalls === 1) await gate;
        },
        names: async () => {},
      };
      const q = new CommitQueue({ barrier, maxFiles: 2 });
      const staged: StagedFile[] = [];
      for (let i = 0; i < 5; i++) staged.push(await stage(dir, `n${i}`));
      const add = (s: StagedFile) =>
        q.add({ staged: s, bytes: 1, committed: () => {}, failed: (e) => assert.fail(String(e)) });
      await add(staged[0]!);
      await add(staged[1]!); // batch 1 full: committing, held at its barrier
      await add(staged[2]!);
      await add(staged[3]!); // batch 2 full, waits
      let fifth = false;
      const p = add(staged[4]!).then(() => (fifth = true));
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(fifth, false, "a third batch is not accepted while two are full");
      release();
      await p;
      await q.flush();
      assert.equal((await readdir(dir)).length, 5);
    });
  });

  test("the real barriers: syncfs (sync -f) and fdatasync both commit, none skips them", async () => {
    for (const forced of ["syncfs", "fdatasync"]) {
      await withDir(async (dir) => {
        const barrier = barrierFor(dir, true, forced);
        if (forced === "syncfs" && process.platform === "linux") assert.equal(barrier.kind, "syncfs");
        const q = new CommitQueue({ barrier, maxFiles: 2 });
        let n = 0;
        for (const rel of ["s/a", "s/b", "t/c"])
          await q.add({
            staged: await stage(dir, rel),
            bytes: 1,
            committed: () => n++,
            failed: (e) => assert.fail(String(e)),
          });
        await q.flush();
        assert.equal(n, 3);
        assert.equal(readFileSync(path.join(dir, "t/c"), "utf8"), "t/c");
      });
    }
    assert.equal(barrierFor("/", false).kind, "none");
  });

  test(
    "syncfs runs `sync -f` through one helper shell; a failing sync is an EIO error, not a silent pass",
    {
      skip: process.platform !== "linux" ? "sync -f is GNU coreutils (Linux)" : false,
    },
    async () => {
      const gone = path.join(os.tmpdir(), `hcx-no-such-dir-${process.pid}`);
      // A quiet machine (4 KiB dirty), whatever this one's other writers are doing: else a busy
      // page cache (a parallel suite, a build) sends every batch to its own fdatasyncs.
      const barrier = barrierFor(gone, true, "syncfs", () => 4096);
      assert.equal(barrier.kind, "syncfs");
      // Over 64 files (or 64 directories, ancestors counted) a batch is one syncfs of the whole file system.
      const many = Array.from({ length: 65 }, (_, i) => path.join(gone, `f${i}`));
      await assert.rejects(
        barrier.data(many),
        (err: NodeJS.ErrnoException) => err.code === "EIO" && /sync/.test(err.message),
      );
      // The helper survives a failed request: the next one (same helper) answers again.
      const dirs = Array.from({ length: 65 }, (_, i) => path.join(gone, `d${i}`));
      await assert.rejects(barrier.names(dirs), (err: NodeJS.ErrnoException) => err.code === "EIO");
      // Directories count with their ancestors: 40 series of 40 studies are 81 fsyncs, so one
      // syncfs (a cold copy's batch of ~100 SIIM files made ~2 directory fsyncs per file).
      const series = Array.from({ length: 40 }, (_, i) => path.join(gone, `study${i}`, `series${i}`));
      await assert.rejects(barrier.names(series), (err: NodeJS.ErrnoException) => err.code === "EIO");
      // Another writer's dirty pages (over 192 MiB machine-wide): a batch of any size syncs its
      // own files and directories (syncfs would wait for all of them); the helper is not asked.
      await withDir(async (dir) => {
        const files = Array.from({ length: 65 }, (_, i) => path.join(dir, `f${i}`));
        await Promise.all(files.map((f) => writeFile(f, "x")));
        const busy = barrierFor(gone, true, "syncfs", () => 1024 ** 3);
        await busy.data(files);
        const dirs = Array.from({ length: 65 }, (_, i) => path.join(dir, `d${i}`));
        await Promise.all(dirs.map((d) => mkdir(d)));
        await busy.names(dirs);
        const idle = barrierFor(gone, true, "syncfs", () => 4096);
        await assert.rejects(idle.data(files), (err: NodeJS.ErrnoException) => err.code === "EIO");
        await assert.rejects(idle.names(dirs), (err: NodeJS.ErrnoException) => err.code === "EIO");
      });
      // A small batch syncs its own files and directories, never the whole file system: the
      // same helper, whose sync -f would fail here, is not asked.
      await withDir(async (dir) => {
        const own = path.join(dir, "own");
        await writeFile(own, "x");
        await barrier.data([own]);
        await barrier.names([dir]);
      });
      await withDir(async (dir) => {
        const ok = barrierFor(dir, true, "syncfs");
        await Promise.all([ok.data([]), ok.data([]), ok.names([dir])]);
        // A relative destination named like an option reaches `sync -f` as an absolute path.
        const cwd = process.cwd();
        process.chdir(dir);
        try {
          await mkdtemp("-n");
          const dashed = (await readdir(".")).find((e) => e.startsWith("-n"))!;
          await barrierFor(dashed, true, "syncfs").data([]);
        } finally {
          process.chdir(cwd);
        }
      });
    },
  );
});
