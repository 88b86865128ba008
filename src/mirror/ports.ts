import { HcexportError } from "../core/errors.ts";

/** One listed object: what the mirror needs to decide and to verify. */
export interface RemoteObject {
  readonly name: string;
  readonly size: number;
  readonly generation: string;
  /** base64 big-endian CRC32C, as GCS lists it */
  readonly crc32c?: string;
  /** base64 MD5 (absent for composite objects) */
  readonly md5Hash?: string;
  /** The object's HTTP ETag, when listed (compared only when there is no hash). */
  readonly etag?: string;
  /** `gzip` for objects stored gzip-compressed: size and hashes are those of the stored bytes. */
  readonly contentEncoding?: string;
}

/** The bucket side of a mirror (implemented over the GCS JSON API in src/gcp/gcs-objects.ts). */
export interface RemoteSource {
  /** Objects under `prefix`, page by page, in UTF-8 byte order. */
  listPages(bucket: string, prefix: string, signal?: AbortSignal): AsyncIterable<readonly RemoteObject[]>;
  /** The bytes of exactly the listed generation, as stored (no decompressive transcoding). */
  open(bucket: string, object: RemoteObject, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>;
  /**
   * `open`'s bytes copied straight into `into` (exactly `object.size` bytes), without a body
   * stream: the mirror's small objects. Rejects on a body longer or shorter than that. Optional:
   * without it they are read from `open`.
   */
  receive?(bucket: string, object: RemoteObject, into: Uint8Array, signal?: AbortSignal): Promise<void>;
  /**
   * Bytes `start`…`endInclusive` of exactly the listed generation (`Range: bytes=a-b`), as stored.
   * The answer's status and Content-Range are the caller's to check: a server that ignores Range
   * answers 200 with the whole body. Optional: without it big objects are one stream.
   */
  openRange?(
    bucket: string,
    object: RemoteObject,
    start: number,
    endInclusive: number,
    signal?: AbortSignal,
  ): Promise<RangeBody>;
}

/** A ranged read's answer: what the server claims to have sent, and the bytes. */
export interface RangeBody {
  readonly status: number;
  /** The Content-Range header as received (`bytes a-b/size`), if any. */
  readonly contentRange: string | undefined;
  /** The x-goog-generation header as received, if any. */
  readonly generation: string | undefined;
  readonly body: AsyncIterable<Uint8Array> & { destroy?: (err?: Error) => void };
}

/**
 * The listing itself is wrong (malformed pages, page tokens that cycle, no end in sight): the
 * server is broken, running again will not help (exit 1), and nothing is deleted.
 */
export class ListingError extends HcexportError {
  constructor(message: string) {
    super(message, undefined, {
      hint: "the server's object listing cannot be trusted; check the endpoint (--storage-endpoint) or report it",
    });
    this.name = "ListingError";
  }
}
