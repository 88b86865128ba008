import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { planSlices, rangedPolicy, sliceBytesFor, wantsRanged } from "../../src/mirror/ranged-download.ts";
import type { RemoteObject, RemoteSource } from "../../src/mirror/ports.ts";

const MiB = 1024 * 1024;

describe("planSlices", () => {
  test("covers every byte once, in order, each at most the slice size, only the last shorter", () => {
    for (const [size, slice] of [
      [1, 1],
      [10, 3],
      [40 * MiB, 8 * MiB],
      [40 * MiB + 1, 8 * MiB],
      [100 * MiB, 16 * MiB],
      [5 * 2 ** 30 + 7, 64 * MiB],
    ] as const) {
      const slices = planSlices(size, slice);
      assert.equal(slices.length, Math.ceil(size / slice), `${size}/${slice}`);
      assert.equal(slices[0]!.start, 0);
      assert.equal(slices.at(-1)!.end, size - 1);
      for (let i = 0; i < slices.length; i++) {
        const s = slices[i]!;
        const len = s.end - s.start + 1;
        if (i < slices.length - 1) {
          assert.equal(len, slice);
          assert.equal(slices[i + 1]!.start, s.end + 1, "contiguous");
        } else assert.ok(len >= 1 && len <= slice);
      }
    }
  });

  test("an exact multiple has no short tail; a zero-byte object has no slices", () => {
    assert.deepEqual(planSlices(24, 8), [
      { start: 0, end: 7 },
      { start: 8, end: 15 },
      { start: 16, end: 23 },
    ]);
    assert.deepEqual(planSlices(25, 8).at(-1), { start: 24, end: 24 });
    assert.deepEqual(planSlices(0, 8), []);
  });

  test("refuses nonsense sizes", () => {
    assert.throws(() => planSlices(-1, 8), RangeError);
    assert.throws(() => planSlices(10, 0), RangeError);
    assert.throws(() => planSlices(10, 1.5), RangeError);
  });
});

describe("wantsRanged", () => {
  const policy = rangedPolicy({ threshold: 32 * MiB, sliceBytes: 16 * MiB });
  const ranged = { openRange: async () => undefined } as unknown as RemoteSource;
  const plain = {} as RemoteSource;
  const big: RemoteObject = { name: "a", size: 40 * MiB, generation: "1", crc32c: "AAAAAA==" };

  test("big objects with a CRC32C on a source that reads ranges", () => {
    assert.equal(wantsRanged(policy, ranged, big), true);
    assert.equal(wantsRanged(policy, ranged, { ...big, size: 32 * MiB }), true, "at the threshold");
  });

  test("not: below the threshold, MD5 only, gzip-stored, no openRange, policy off, one slice only", () => {
    assert.equal(wantsRanged(policy, ranged, { ...big, size: 32 * MiB - 1 }), false);
    const { crc32c: _drop, ...md5Only } = { ...big, md5Hash: "x" };
    assert.equal(wantsRanged(policy, ranged, md5Only), false);
    assert.equal(wantsRanged(policy, ranged, { ...big, contentEncoding: "gzip" }), false);
    assert.equal(wantsRanged(policy, plain, big), false);
    assert.equal(wantsRanged(false, ranged, big), false);
    assert.equal(wantsRanged(rangedPolicy({ threshold: 1 }), ranged, { ...big, size: MiB }), false);
  });

  test("an object smaller than two of the policy's slices is cut in two", () => {
    assert.equal(wantsRanged(rangedPolicy({ threshold: 1, sliceBytes: 64 * MiB }), ranged, big), true);
  });
});

describe("sliceBytesFor", () => {
  const p = rangedPolicy();
  test("the policy's slice for big objects, halves (whole MiB, rounded up) below two of them", () => {
    assert.equal(p.sliceBytes, 64 * MiB);
    assert.equal(sliceBytesFor(p, 5 * 2 ** 30), 64 * MiB);
    assert.equal(sliceBytesFor(p, 128 * MiB), 64 * MiB);
    assert.equal(sliceBytesFor(p, 100 * MiB), 50 * MiB);
    assert.equal(sliceBytesFor(p, 40 * MiB + 1234), 21 * MiB);
    assert.equal(sliceBytesFor(p, 32 * MiB), 16 * MiB);
    for (const size of [32 * MiB, 32 * MiB + 1, 77 * MiB + 3, 128 * MiB - 1, 129 * MiB, 2 ** 33 + 5]) {
      const s = sliceBytesFor(p, size);
      assert.equal(s % MiB, 0, `${size}: whole MiB`);
      assert.ok(planSlices(size, s).length >= 2, `${size}: at least two slices`);
    }
  });
  test("a smaller policy slice wins, whatever it is", () => {
    assert.equal(sliceBytesFor({ sliceBytes: 8 * MiB + 1 }, 40 * MiB), 8 * MiB + 1);
    assert.equal(sliceBytesFor({ sliceBytes: 3 }, 10), 3);
  });
});
