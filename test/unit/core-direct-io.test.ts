import assert from "node:assert/strict";
import { closeSync, constants, openSync, readdirSync, readFileSync, statSync, writeSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AlignedChunks,
  AlignedScratch,
  alignUp,
  createMaybeDirect,
  createMaybeDirectSync,
  DIRECT_ALIGN,
  DIRECT_MIN_BYTES,
  directIo,
  directIoModeFrom,
  DirectRefused,
  writeDirect,
  writeDirectSync,
} from "../../src/core/direct-io.ts";
import { stageBufferSync } from "../../src/core/atomic-file.ts";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { IntegrityError } from "../../src/core/errors.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { withTempDir } from "../support/temp-dir.ts";

const CREATE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Whether the file system of the OS temp dir enforces O_DIRECT's alignment (ext4, xfs, btrfs do;
 * tmpfs takes the flag and any write). The alignment tests need one that does.
 */
function enforcesAlignment(dir: string): boolean {
  const file = path.join(dir, "probe");
  const { fd, direct } = createMaybeDirectSync(file, CREATE, 0o644, true);
  try {
    if (!direct) return false;
    // Offset 1 of a plain buffer: misaligned whatever its address.
    writeSync(fd, Buffer.alloc(DIRECT_ALIGN + 1), 1, DIRECT_ALIGN, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EINVAL";
  } finally {
    closeSync(fd);
  }
}

describe("direct I/O pieces", () => {
  it("the mode: big objects by default, all with HCX_DIRECT_IO=all, off with 0 or where O_DIRECT does not exist", () => {
    assert.equal(directIoModeFrom(undefined, true), "big");
    assert.equal(directIoModeFrom("", true), "big");
    assert.equal(directIoModeFrom("all", true), "all");
    assert.equal(directIoModeFrom("0", true), "off");
    assert.equal(directIoModeFrom("off", true), "off");
    assert.equal(directIoModeFrom("all", false), "off");
  });

  it("rounds sizes up to whole blocks", () => {
    assert.equal(alignUp(0), 0);
    assert.equal(alignUp(1), DIRECT_ALIGN);
    assert.equal(alignUp(DIRECT_ALIGN), DIRECT_ALIGN);
    assert.equal(alignUp(150_000), 37 * DIRECT_ALIGN);
  });

  it("AlignedChunks hands out distinct chunks, reuses given-back ones, and makes slabs only as needed", () => {
    const pool = new AlignedChunks(65536, 4);
    const taken = Array.from({ length: 5 }, () => pool.take());
    assert.equal(pool.made, 8, "two slabs of four");
    taken.forEach((c, i) => c.fill(i + 1));
    taken.forEach((c, i) =>
      assert.ok(
        c.every((b) => b === i + 1),
        `chunk ${i} kept its bytes: no overlap`,
      ),
    );
    assert.ok(taken.every((c) => c.byteLength === 65536));
    pool.give(taken[0]!);
    assert.equal(pool.take(), taken[0], "a given-back chunk is reused");
    assert.equal(pool.made, 8);
    assert.throws(() => new AlignedChunks(1000), RangeError);
  });

  it("AlignedScratch copies the bytes and pads them with zeros to whole blocks", () => {
    const scratch = new AlignedScratch();
    const bytes = Buffer.alloc(5000, 7);
    const first = scratch.copyOf(bytes);
    assert.equal(first.byteLength, 2 * DIRECT_ALIGN);
    assert.ok(first.subarray(0, 5000).equals(bytes));
    assert.ok(first.subarray(5000).every((b) => b === 0));
    // Reused: a smaller object's padding is zero again, not the bigger one's bytes.
    const small = scratch.copyOf(Buffer.alloc(10, 9));
    assert.equal(small.buffer, first.buffer);
    assert.ok(small.subarray(10).every((b) => b === 0));
    const big = scratch.copyOf(Buffer.alloc(200_000, 1));
    assert.equal(big.byteLength, alignUp(200_000));
  });

  it("chunks and scratch copies are aligned: a direct write from them lands; one from a plain buffer is DirectRefused", async (t) => {
    await withTempDir("hcx-direct-", async (dir) => {
      if (!enforcesAlignment(dir)) return t.skip("this file system does not enforce O_DIRECT alignment");
      const { handle, direct } = await createMaybeDirect(path.join(dir, "chunks"), CREATE, 0o644, true);
      assert.ok(direct);
      try {
        const pool = new AlignedChunks(65536, 3);
        const chunks = [pool.take(), pool.take(), pool.take(), pool.take()];
        for (const [i, c] of chunks.entries()) {
          c.fill(i + 1);
          await writeDirect(handle.fd, c, i * 65536);
        }
        await assert.rejects(writeDirect(handle.fd, Buffer.alloc(DIRECT_ALIGN + 1).subarray(1), 0), DirectRefused);
      } finally {
        await handle.close();
      }
      const back = readFileSync(path.join(dir, "chunks"));
      assert.equal(back.byteLength, 4 * 65536);
      for (let i = 0; i < 4; i++) assert.ok(back.subarray(i * 65536, (i + 1) * 65536).every((b) => b === i + 1));

      const sync = createMaybeDirectSync(path.join(dir, "scratch"), CREATE, 0o644, true);
      try {
        writeDirectSync(sync.fd, new AlignedScratch().copyOf(Buffer.alloc(9000, 5)), 0);
        assert.throws(() => writeDirectSync(sync.fd, Buffer.alloc(DIRECT_ALIGN + 1).subarray(1), 0), DirectRefused);
      } finally {
        closeSync(sync.fd);
      }
      assert.equal(statSync(path.join(dir, "scratch")).size, alignUp(9000));
    });
  });

  it("createMaybeDirect without wantDirect opens a plain descriptor, and keeps O_EXCL", async () => {
    await withTempDir("hcx-direct-", async (dir) => {
      const file = path.join(dir, "plain");
      const { handle, direct } = await createMaybeDirect(file, CREATE, 0o644, false);
      assert.equal(direct, false);
      await handle.close();
      await assert.rejects(createMaybeDirect(file, CREATE, 0o644, true), { code: "EEXIST" });
      assert.throws(() => openSync(file, CREATE), { code: "EEXIST" });
    });
  });
});

describe("stageBufferSync with direct I/O (HCX_DIRECT_IO=all)", () => {
  const was = directIo.on ? (directIo.small ? "all" : "big") : "off";
  before(() => directIo.set("all"));
  after(() => directIo.set(was));
  const expectedOf = (b: Buffer) => ({ size: b.byteLength, crc32c: crc32cBase64(b) });

  it("writes the exact bytes and size of an object that ends mid-block, and says it wrote directly", async (t) => {
    await withTempDir("hcx-direct-stage-", async (dir) => {
      if (directIoModeFrom("all") === "off") return t.skip("no direct I/O on this platform");
      const bytes = Buffer.alloc(DIRECT_MIN_BYTES + 12_345);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
      const staged = stageBufferSync(
        dir,
        "a/b/c.dcm",
        "a/b/c.dcm",
        bytes,
        expectedOf(bytes),
        new DirectoryGuard(dir),
        true,
      );
      const { direct } = createMaybeDirectSync(path.join(dir, "probe"), CREATE, 0o644, true);
      assert.equal(staged.direct === true, direct, "direct wherever the file system takes the flag");
      assert.equal(staged.bytes, bytes.byteLength);
      assert.equal(statSync(staged.temp).size, bytes.byteLength, "cut back from the padded block");
      assert.ok(readFileSync(staged.temp).equals(bytes));
    });
  });

  it("creates nothing for bytes that do not match, direct or not", async () => {
    await withTempDir("hcx-direct-stage-", async (dir) => {
      const bytes = Buffer.alloc(DIRECT_MIN_BYTES * 2, 3);
      const wrong = { size: bytes.byteLength, crc32c: crc32cBase64(Buffer.alloc(1)) };
      for (const allow of [true, false])
        assert.throws(
          () => stageBufferSync(dir, `x/${allow}.dcm`, "x.dcm", bytes, wrong, new DirectoryGuard(dir), allow),
          IntegrityError,
        );
      assert.deepEqual(readdirSync(dir), [], "not even the parent directory");
    });
  });

  it("objects below DIRECT_MIN_BYTES, and any without allowDirect, go through the page cache", async () => {
    await withTempDir("hcx-direct-stage-", async (dir) => {
      const small = Buffer.alloc(DIRECT_MIN_BYTES - 1, 1);
      const big = Buffer.alloc(DIRECT_MIN_BYTES * 2, 2);
      const guard = new DirectoryGuard(dir);
      assert.equal(stageBufferSync(dir, "s.dcm", "s.dcm", small, expectedOf(small), guard, true).direct, undefined);
      assert.equal(stageBufferSync(dir, "b.dcm", "b.dcm", big, expectedOf(big), guard, false).direct, undefined);
    });
  });
});
