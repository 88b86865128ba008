import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { taggedByThisProcess, tempWriterGone } from "../../src/core/temp-names.ts";
import type { ExpectedContent } from "../../src/core/expected-content.ts";
import { destinationFault, IntegrityError, UnsafeNameError } from "../../src/core/errors.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { isRetryable } from "../../src/core/retry.ts";
import {
  Arena,
  createStager,
  defaultStageThreads,
  deserializeError,
  serializeError,
  stageThreadsFromEnv,
  threadMinBytesFromEnv,
  ThreadStager,
  THREAD_MIN_BYTES,
  type Stager,
} from "../../src/core/stage-pool.ts";
import { withTempDir } from "../support/temp-dir.ts";

/** Deterministic bytes, different per seed. */
function bytesOf(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** Leases room for `data`, copies it in, stages it; the lease is released as the mirror does. */
async function stageBytes(
  stager: Stager,
  root: string,
  rel: string,
  data: Buffer,
  expected: ExpectedContent = { crc32c: crc32cBase64(data), size: data.byteLength },
) {
  const lease = stager.lease(data.byteLength);
  try {
    lease.bytes.set(data);
    return await stager.stage({ root, relName: rel, name: rel, lease, expected, guard: new DirectoryGuard(root) });
  } finally {
    lease.release();
  }
}

describe("Arena", () => {
  it("reuses its buffers (plain, not shared), takes each back once, never keeps a bigger one or more than its slots", () => {
    const arena = new Arena(2, 1024);
    const a = arena.lease(1000);
    const b = arena.lease(10);
    assert.ok(a.bytes.buffer instanceof ArrayBuffer, "a plain ArrayBuffer: V8 copies into a shared one slowly");
    assert.notEqual(a.bytes.buffer, b.bytes.buffer);
    assert.deepEqual([a.bytes.byteOffset, a.bytes.byteLength, a.bytes.buffer.byteLength], [0, 1000, 1024]);
    const c = arena.lease(10); // more out than slots: a buffer like the others
    const big = arena.lease(2000);
    assert.equal(big.bytes.byteLength, 2000);
    a.release();
    a.release(); // idempotent: not handed out twice
    assert.equal(arena.free, 1);
    assert.equal(arena.lease(5).bytes.buffer, a.bytes.buffer, "the same buffer again");
    assert.notEqual(arena.lease(5).bytes.buffer, a.bytes.buffer);
    big.release();
    assert.equal(arena.free, 0, "a bigger object's buffer is not kept");
    b.release();
    c.release();
    arena.give(new ArrayBuffer(1024));
    assert.equal(arena.free, 2, "never more than its slots");
  });

  it("a buffer moved to another thread is not taken back until it returns", () => {
    const arena = new Arena(4, 1024);
    const lease = arena.lease(100);
    const buffer = lease.bytes.buffer as ArrayBuffer;
    const moved = structuredClone(buffer, { transfer: [buffer] });
    lease.release(); // detached here: nothing to take back
    assert.equal(arena.free, 0);
    arena.give(moved); // the thread's answer brings it back
    assert.equal(arena.free, 1);
    assert.equal(arena.lease(100).bytes.buffer, moved);
  });
});

describe("stage errors across a thread", () => {
  it("keep their class and what the engines classify them by", () => {
    const unsafe = deserializeError(serializeError(new UnsafeNameError("a/../b", "'..' segment")));
    assert.ok(unsafe instanceof UnsafeNameError);
    assert.equal(unsafe.message, new UnsafeNameError("a/../b", "'..' segment").message);
    assert.equal(unsafe.remoteName, "a/../b");
    const integrity = deserializeError(serializeError(new IntegrityError("x: crc32c A does not match the listed B")));
    assert.ok(integrity instanceof IntegrityError);
    assert.ok(isRetryable(integrity));
    const full = Object.assign(new Error("ENOSPC: no space left on device, open '/d/x'"), {
      code: "ENOSPC",
      errno: -28,
      syscall: "open",
      path: "/d/x",
    });
    const back = deserializeError(serializeError(full)) as NodeJS.ErrnoException;
    assert.equal(back.code, "ENOSPC");
    assert.equal(back.errno, -28);
    assert.equal(back.syscall, "open");
    assert.equal(back.path, "/d/x");
    assert.equal(destinationFault(back), "ENOSPC: no space left on device");
  });
});

describe("settings from the environment", () => {
  it("take valid values only", () => {
    assert.equal(stageThreadsFromEnv("0"), 0);
    assert.equal(stageThreadsFromEnv("2"), 2);
    assert.equal(stageThreadsFromEnv("-1"), defaultStageThreads());
    assert.equal(stageThreadsFromEnv("many"), defaultStageThreads());
    assert.equal(stageThreadsFromEnv(""), defaultStageThreads());
    // A command with its own default (the pull: none) still takes the variable.
    assert.equal(stageThreadsFromEnv(undefined, 0), 0);
    assert.equal(stageThreadsFromEnv("1", 0), 1);
    assert.equal(stageThreadsFromEnv("nine", 0), 0);
    // Two threads where they wait for the disk (direct I/O), one where they copy into the page cache.
    assert.equal(defaultStageThreads(true), 2);
    assert.equal(defaultStageThreads(false), 1);
    assert.equal(threadMinBytesFromEnv("0"), 0);
    assert.equal(threadMinBytesFromEnv("1.5"), THREAD_MIN_BYTES);
    assert.equal(threadMinBytesFromEnv(""), THREAD_MIN_BYTES);
  });
});

for (const threads of [0, 1]) {
  describe(`a stager with ${threads} stage thread(s)`, () => {
    it("writes verified bytes into a temp file named as this process's, beside the final name, and leaves the final name alone", () =>
      withTempDir("hcx-stage-", async (root) => {
        const stager = createStager(threads, 0);
        try {
          const data = bytesOf(100_000, 1);
          const staged = await stageBytes(stager, root, "study/series/x.dcm", data);
          assert.equal(staged.path, path.join(root, "study/series/x.dcm"));
          assert.equal(path.dirname(staged.temp), path.join(root, "study/series"));
          assert.ok(taggedByThisProcess(path.basename(staged.temp)), staged.temp);
          assert.equal(tempWriterGone(path.basename(staged.temp)), false);
          assert.equal(staged.bytes, data.byteLength);
          assert.deepEqual(await readFile(staged.temp), data);
          assert.deepEqual(await readdir(path.join(root, "study/series")), [path.basename(staged.temp)]);
          // Many at once: unique temp names, each with its own bytes.
          const many = await Promise.all(
            Array.from({ length: 40 }, (_, i) =>
              stageBytes(stager, root, `s${i % 3}/x${i}.dcm`, bytesOf(70_000 + i, i)),
            ),
          );
          assert.equal(new Set(many.map((m) => m.temp)).size, 40);
          for (const [i, m] of many.entries()) assert.deepEqual(await readFile(m.temp), bytesOf(70_000 + i, i));
        } finally {
          await stager.close();
        }
      }));

    it("creates nothing for bytes that do not match, and says which digest failed", () =>
      withTempDir("hcx-stage-", async (root) => {
        const stager = createStager(threads, 0);
        try {
          const data = bytesOf(80_000, 2);
          await assert.rejects(
            stageBytes(stager, root, "a/b.dcm", data, { crc32c: crc32cBase64(bytesOf(80_000, 3)), size: 80_000 }),
            (e: unknown) =>
              e instanceof IntegrityError && /a\/b\.dcm: crc32c .* does not match the listed/.test(e.message),
          );
          await assert.rejects(
            stageBytes(stager, root, "a/b.dcm", data, { size: 79_999 }),
            (e: unknown) => e instanceof IntegrityError && /got 80000 bytes, expected 79999/.test(e.message),
          );
          // A digest from the answer's headers (the pull's Repr-Digest), checked where the bytes are written.
          const otherSha = createHash("sha256").update(bytesOf(80_000, 3)).digest("base64");
          await assert.rejects(
            stageBytes(stager, root, "a/b.dcm", data, {
              size: 80_000,
              digest: { algorithm: "sha-256", value: otherSha, header: "repr-digest" },
            }),
            (e: unknown) =>
              e instanceof IntegrityError &&
              e.message ===
                `a/b.dcm: sha-256 ${createHash("sha256").update(data).digest("base64")} does not match the repr-digest header's ${otherSha}`,
          );
          assert.deepEqual(await readdir(root), []);
          const sha = createHash("sha256").update(data).digest("base64");
          const staged = await stageBytes(stager, root, "a/b.dcm", data, {
            size: 80_000,
            digest: { algorithm: "sha-256", value: sha, header: "repr-digest" },
          });
          assert.deepEqual(await readFile(staged.temp), data, "the matching digest is written");
        } finally {
          await stager.close();
        }
      }));

    it("refuses a symlinked parent and writes nothing through it", () =>
      withTempDir("hcx-stage-", async (tmp) => {
        const root = path.join(tmp, "dest");
        const outside = path.join(tmp, "outside");
        await mkdir(root);
        await mkdir(outside);
        await writeFile(path.join(outside, "keep"), "keep");
        await symlink(outside, path.join(root, "study"));
        const stager = createStager(threads, 0);
        try {
          await assert.rejects(
            stageBytes(stager, root, "study/x.dcm", bytesOf(70_000, 4)),
            (e: unknown) => e instanceof UnsafeNameError && /symlink/.test(e.message),
          );
          assert.deepEqual(await readdir(outside), ["keep"]);
        } finally {
          await stager.close();
        }
      }));
  });
}

describe("ThreadStager", () => {
  it("stages objects below its threshold on the calling thread, starting no thread for them", () =>
    withTempDir("hcx-stage-", async (root) => {
      const stager = new ThreadStager(1, 64 * 1024);
      try {
        await stageBytes(stager, root, "small.dcm", bytesOf(1000, 5));
        assert.equal(stager.workers.length, 0);
        assert.equal(stager.lost, false);
        await stageBytes(stager, root, "big.dcm", bytesOf(64 * 1024, 6));
        assert.equal(stager.workers.length, 1);
        // Its buffer went to the thread and came back with the answer: one buffer serves every object.
        assert.equal(stager.arena.free, 1);
        const again = await stageBytes(stager, root, "big2.dcm", bytesOf(64 * 1024, 7));
        assert.deepEqual(await readFile(again.temp), bytesOf(64 * 1024, 7));
        assert.equal(stager.arena.free, 1);
      } finally {
        await stager.close();
      }
    }));

  it("fails the requests of a thread that dies with a retryable error, then stages on the calling thread", () =>
    withTempDir("hcx-stage-", async (root) => {
      const stager = new ThreadStager(1, 0);
      try {
        await stageBytes(stager, root, "first.dcm", bytesOf(10, 7));
        const [worker] = stager.workers;
        // Stopped before the request is posted but before its exit is seen: the thread still looks
        // alive, takes the request, and never runs it (a stopping worker delivers no more messages).
        const stopped = worker!.terminate();
        const inFlight = stageBytes(stager, root, "lost.dcm", bytesOf(4 << 20, 8));
        await assert.rejects(inFlight, (e: unknown) => isRetryable(e) && /stage thread stopped/.test(String(e)));
        await stopped;
        // A temp file it may have left is for the next run's walk to sweep: the run must not end clean.
        assert.equal(stager.lost, true);
        const again = await stageBytes(stager, root, "again.dcm", bytesOf(500_000, 8));
        assert.deepEqual(await readFile(again.temp), bytesOf(500_000, 8));
        assert.equal(stager.workers.length, 1); // not restarted: the calling thread took over
      } finally {
        await stager.close();
      }
    }));
});
