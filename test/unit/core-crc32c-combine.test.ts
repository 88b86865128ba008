import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import { crc32cCombine } from "../../src/core/crc32c-combine.ts";
import { seededRandom } from "../../src/emulator/faults.ts";

/**
 * An independent slow path (gsutil's method, not the matrices): crc(A‖B) = crc(A)·x^(8·lenB) mod P
 * ⊕ crc(B), with x^(8·lenB) by square-and-multiply in GF(2)[x]/P, bit-reflected 32-bit values.
 * BigInt exponent, so lengths past 2^32 are exact.
 */
const P = 0x82f63b78;
function mulmod(a: number, b: number): number {
  // Reflected: bit 31 is x^0. Multiply a(x)·b(x) mod P, shifting b by x each step.
  let m = 0x80000000;
  let p = 0;
  let bb = b >>> 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= bb;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    if (m === 0) break;
    bb = bb & 1 ? (bb >>> 1) ^ P : bb >>> 1;
  }
  return p >>> 0;
}
function xPow8n(n: bigint): number {
  // x^(8n) mod P; x^1 in reflected form is 0x40000000, x^0 is 0x80000000.
  let result = 0x80000000;
  // x^8: square x three times.
  let base = 0x40000000;
  for (let i = 0; i < 3; i++) base = mulmod(base, base);
  for (let e = n; e > 0n; e >>= 1n) {
    if ((e & 1n) === 1n) result = mulmod(result, base);
    base = mulmod(base, base);
  }
  return result >>> 0;
}
function slowCombine(crcA: number, crcB: number, lenB: bigint): number {
  return (mulmod(xPow8n(lenB), crcA >>> 0) ^ crcB) >>> 0;
}

describe("crc32cCombine", () => {
  test("a known vector: crc32c('123456789') = 0xe3069283 from any split", () => {
    const data = Buffer.from("123456789");
    assert.equal(crc32c(data), 0xe3069283);
    for (let cut = 0; cut <= data.length; cut++) {
      const a = data.subarray(0, cut);
      const b = data.subarray(cut);
      assert.equal(crc32cCombine(crc32c(a), crc32c(b), b.length), 0xe3069283, `cut at ${cut}`);
    }
  });

  test("random data, random splits into many parts, combined left to right = crc of the whole", () => {
    const rnd = seededRandom(7);
    for (let round = 0; round < 40; round++) {
      const data = randomBytes(Math.floor(rnd() * 200_000));
      const cuts = [0, data.length];
      for (let k = Math.floor(rnd() * 12); k > 0; k--) cuts.push(Math.floor(rnd() * (data.length + 1)));
      cuts.sort((x, y) => x - y); // repeated cuts give 0-length parts
      let crc = 0;
      for (let i = 0; i + 1 < cuts.length; i++) {
        const part = data.subarray(cuts[i], cuts[i + 1]);
        crc = crc32cCombine(crc, crc32c(part), part.length);
      }
      assert.equal(crc, crc32c(data), `round ${round}, cuts ${cuts.join(",")}`);
    }
  });

  test("0-length parts on either side leave the other CRC unchanged", () => {
    const x = crc32c(Buffer.from("slice"));
    assert.equal(crc32cCombine(x, 0, 0), x);
    assert.equal(crc32cCombine(0, x, 5), x); // crc of the empty string is 0
  });

  test("the matrix method agrees with the polynomial slow path, up to lengths far past 4 GiB", () => {
    const rnd = seededRandom(3);
    const lengths = [1, 2, 3, 255, 4096, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, 5 * 2 ** 30 + 17, 2 ** 40 + 3];
    lengths.push(Number.MAX_SAFE_INTEGER);
    for (const len of lengths) {
      const a = Math.floor(rnd() * 2 ** 32);
      const b = Math.floor(rnd() * 2 ** 32);
      assert.equal(crc32cCombine(a, b, len), slowCombine(a, b, BigInt(len)), `len ${len}`);
    }
    // The slow path itself is right where it can be checked against the definition.
    const data = randomBytes(70_000);
    const a = data.subarray(0, 12_345);
    const b = data.subarray(12_345);
    assert.equal(slowCombine(crc32c(a), crc32c(b), BigInt(b.length)), crc32c(data));
  });

  test("by definition past 4 GiB: A followed by 4 GiB + 3 zero bytes, streamed through crc32c", () => {
    const a = Buffer.from("prefix before a very long run of zeros");
    const zeros = Buffer.alloc(64 * 1024 * 1024);
    const lenB = 2 ** 32 + 3;
    let whole = crc32c(a);
    let crcB = 0;
    for (let left = lenB; left > 0; left -= Math.min(left, zeros.length)) {
      const part = zeros.subarray(0, Math.min(left, zeros.length));
      whole = crc32c(part, whole);
      crcB = crc32c(part, crcB);
    }
    assert.equal(crc32cCombine(crc32c(a), crcB, lenB), whole);
    // Truncating the length to 32 bits (the classic bug) gives a different answer.
    assert.notEqual(crc32cCombine(crc32c(a), crcB, lenB % 2 ** 32), whole);
  });

  test("refuses negative, fractional and unsafe lengths", () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) assert.throws(() => crc32cCombine(1, 2, bad), RangeError);
  });
});
