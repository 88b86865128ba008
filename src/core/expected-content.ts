import { createHash } from "node:crypto";
import { IntegrityError } from "./errors.ts";
import { crc32cBase64, md5Base64 } from "./hashing.ts";

/**
 * What a body must be before it gets a final name, and the check of a whole body in memory
 * (`verifyBytes`): where a stage thread writes an object, it verifies the bytes it writes.
 */

/** The digests a server may announce for a body (RFC 9530 names; `x-goog-hash`'s crc32c). */
export type DigestAlgorithm = "sha-256" | "sha-512" | "md5" | "crc32c";

/** A digest a response announced in one of its headers. */
export interface ExpectedDigest {
  readonly algorithm: DigestAlgorithm;
  /** base64 */
  readonly value: string;
  /** The header it came from, for messages. */
  readonly header: string;
}

/** What the bytes must be; any field given is verified before the file gets its final name. */
export interface ExpectedContent {
  readonly size?: number;
  /** base64 big-endian CRC32C, as GCS reports it */
  readonly crc32c?: string;
  /** base64 MD5, as GCS reports it (checked when there is no CRC32C) */
  readonly md5?: string;
  /** A digest from the response's headers (DICOMweb's `Repr-Digest`), checked too. */
  readonly digest?: ExpectedDigest;
}

const NODE_HASH: Record<Exclude<DigestAlgorithm, "crc32c">, string> = {
  "sha-256": "sha256",
  "sha-512": "sha512",
  md5: "md5",
};

/** The node:crypto name of a digest algorithm (undefined: CRC32C, which is not node:crypto's). */
export function nodeHashName(algorithm: DigestAlgorithm): string | undefined {
  // Own keys only: the name comes from a server's header ("constructor" is no algorithm).
  return Object.hasOwn(NODE_HASH, algorithm) ? NODE_HASH[algorithm as keyof typeof NODE_HASH] : undefined;
}

/** A whole buffer's digest, base64 as the headers carry it. */
export function digestBase64(algorithm: DigestAlgorithm, bytes: Uint8Array): string {
  const node = nodeHashName(algorithm);
  return node === undefined ? crc32cBase64(bytes) : createHash(node).update(bytes).digest("base64");
}

/** The message of a digest that does not match (the same for a streamed and a whole body). */
export function digestMismatch(e: ExpectedDigest, got: string): string {
  return `${e.algorithm} ${got} does not match the ${e.header} header's ${e.value}`;
}

/** Throws an IntegrityError unless `bytes` have the expected size and digests (CRC32C, else MD5; and `digest`). */
export function verifyBytes(name: string, bytes: Uint8Array, expected: ExpectedContent): void {
  if (expected.size !== undefined && bytes.byteLength !== expected.size)
    throw new IntegrityError(`${name}: got ${bytes.byteLength} bytes, expected ${expected.size}`);
  if (expected.crc32c !== undefined) {
    const got = crc32cBase64(bytes);
    if (got !== expected.crc32c)
      throw new IntegrityError(`${name}: crc32c ${got} does not match the listed ${expected.crc32c}`);
  } else if (expected.md5 !== undefined) {
    const got = md5Base64(bytes);
    if (got !== expected.md5) throw new IntegrityError(`${name}: md5 ${got} does not match the listed ${expected.md5}`);
  }
  if (expected.digest !== undefined) {
    const got = digestBase64(expected.digest.algorithm, bytes);
    if (got !== expected.digest.value) throw new IntegrityError(`${name}: ${digestMismatch(expected.digest, got)}`);
  }
}
