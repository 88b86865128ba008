import { createHash, type Hash } from "node:crypto";
import { createRequire } from "node:module";

type Crc32c = (input: Buffer, initial?: number) => number;
let nativeCrc32c: Crc32c | undefined;

/**
 * `@node-rs/crc32`'s CRC32C (unsigned 32-bit; `initial` continues a running one), its native
 * addon loaded at the first call: its dlopen is several ms of start-up that a run with nothing to
 * fetch (a no-op re-sync) never needs.
 */
export function crc32c(input: Buffer, initial?: number): number {
  nativeCrc32c ??= (createRequire(import.meta.url)("@node-rs/crc32") as { crc32c: Crc32c }).crc32c;
  return nativeCrc32c(input, initial);
}

/** CRC32C (Castagnoli) as GCS encodes it: base64 of the 4 big-endian bytes. */
export function crc32cToBase64(value: number): string {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b.toString("base64");
}

/** CRC32C of a whole buffer, GCS-encoded. */
export function crc32cBase64(data: Uint8Array): string {
  return crc32cToBase64(crc32c(Buffer.from(data.buffer, data.byteOffset, data.byteLength)));
}

/** MD5 of a whole buffer, base64 (GCS `md5Hash`). */
export function md5Base64(data: Uint8Array): string {
  return createHash("md5").update(data).digest("base64");
}

/** Which digests a streaming hasher computes; each costs CPU, so compute only what you verify. */
export interface HashSelection {
  readonly crc32c?: boolean;
  readonly md5?: boolean;
}

/** Incremental CRC32C + MD5 + byte count over a stream of chunks. */
export class StreamingHasher {
  #crc = 0;
  #md5: Hash | undefined;
  #useCrc: boolean;
  bytes = 0;
  constructor(select: HashSelection = { crc32c: true }) {
    this.#useCrc = select.crc32c ?? false;
    this.#md5 = select.md5 === true ? createHash("md5") : undefined;
  }
  update(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.#useCrc) this.#crc = crc32c(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), this.#crc);
    this.#md5?.update(chunk);
  }
  /** The digests computed so far, GCS-encoded; absent ones were not selected. */
  digest(): { bytes: number; crc32c?: string; md5?: string } {
    return {
      bytes: this.bytes,
      ...(this.#useCrc ? { crc32c: crc32cToBase64(this.#crc) } : {}),
      ...(this.#md5 === undefined ? {} : { md5: this.#md5.digest("base64") }),
    };
  }
}
