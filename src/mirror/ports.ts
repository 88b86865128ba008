/** One listed object: what the mirror needs to decide and to verify. */
export interface RemoteObject {
  readonly name: string;
  readonly size: number;
  readonly generation: string;
  /** base64 big-endian CRC32C, as GCS lists it */
  readonly crc32c?: string;
  /** base64 MD5 (absent for composite objects) */
  readonly md5Hash?: string;
}

/** The bucket side of a mirror (implemented over the GCS JSON API in src/gcp/gcs-objects.ts). */
export interface RemoteSource {
  /** Objects under `prefix`, page by page, in UTF-8 byte order. */
  listPages(bucket: string, prefix: string, signal?: AbortSignal): AsyncIterable<readonly RemoteObject[]>;
  /** The bytes of exactly the listed generation. */
  open(bucket: string, object: RemoteObject, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
}
