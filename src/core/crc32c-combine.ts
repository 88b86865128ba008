/**
 * CRC32C of a concatenation from the CRCs of its parts: `crc32cCombine(crc(A), crc(B), len(B))`
 * is `crc(A ‖ B)`. Lets slices of one object be hashed independently (in any order, in parallel)
 * and still be checked against the object's listed CRC32C. zlib's `crc32_combine` method (GF(2)
 * matrices: appending n zero bytes to a CRC register is a linear map, squared log₂ n times), with
 * the Castagnoli polynomial; gsutil's `ConcatCrc32c` computes the same by polynomial arithmetic.
 */

/** The Castagnoli polynomial, bit-reversed (as the register shifts right). */
const CASTAGNOLI_REFLECTED = 0x82f63b78;

/** `mat × vec` over GF(2): the XOR of the columns selected by the set bits of `vec`. */
function times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0, v = vec >>> 0; v !== 0; i++, v >>>= 1) if ((v & 1) !== 0) sum ^= mat[i]!;
  return sum >>> 0;
}

/** `square = mat × mat`. */
function square(into: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) into[n] = times(mat, mat[n]!);
}

/**
 * The CRC32C (unsigned 32-bit, as `@node-rs/crc32`'s `crc32c` returns it) of A followed by B.
 * `lenB` is B's length in bytes: any safe integer (objects past 4 GiB included).
 */
export function crc32cCombine(crcA: number, crcB: number, lenB: number): number {
  if (!Number.isSafeInteger(lenB) || lenB < 0) throw new RangeError(`crc32cCombine: bad length ${lenB}`);
  let crc = crcA >>> 0;
  if (lenB === 0) return crc;
  const even = new Uint32Array(32); // operator for 2^k zero bits, k even
  const odd = new Uint32Array(32); // … k odd
  // The operator for one zero bit: shift right, feeding the polynomial back on a carry.
  odd[0] = CASTAGNOLI_REFLECTED;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  square(even, odd); // 2 zero bits
  square(odd, even); // 4 zero bits
  // Apply len2 zero bytes (8·lenB bits), one square per bit of lenB; plain division keeps
  // lengths beyond 2^32 exact (bit operators would truncate them to 32 bits).
  let len = lenB;
  for (;;) {
    square(even, odd); // first pass: 1 zero byte, then 4, 16, …
    if (len % 2 === 1) crc = times(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    square(odd, even);
    if (len % 2 === 1) crc = times(odd, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return (crc ^ crcB) >>> 0;
}
