import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Contracts between the parts of the local cloud (DESIGN §5). The server (server.ts) owns the
 * HTTP listener, fault injection and dispatch; each service handles its own paths.
 */

/** An IAM policy as the GCS JSON API speaks it. */
export interface IamBinding {
  role: string;
  members: string[];
  condition?: { title?: string; description?: string; expression: string };
}
export interface IamPolicy {
  kind?: "storage#policy";
  resourceId?: string;
  version: number;
  etag: string;
  bindings: IamBinding[];
}

/** Object metadata as kept by the store (JSON-API field names; numbers as the API encodes them). */
export interface ObjectMeta {
  readonly bucket: string;
  readonly name: string;
  /** decimal string, as in the JSON API */
  readonly generation: string;
  readonly metageneration: string;
  readonly size: number;
  /** base64 */
  readonly md5Hash: string;
  /** base64 of 4 big-endian bytes */
  readonly crc32c: string;
  readonly contentType: string;
  /** `gzip`: the stored bytes are gzip-compressed (served decompressed unless the client accepts gzip). */
  readonly contentEncoding?: string;
  readonly timeCreated: string;
  readonly updated: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

export interface BucketMeta {
  readonly name: string;
  readonly projectNumber: string;
  readonly location: string;
  readonly storageClass: string;
  readonly uniformBucketLevelAccess: boolean;
  readonly timeCreated: string;
  readonly metageneration: string;
}

/**
 * The emulated buckets: what the GCS routes serve and what the Healthcare export writes into.
 * Implementations: in memory, or in a directory (`--data DIR`) so state survives a restart.
 */
export interface ObjectStore {
  getBucket(name: string): BucketMeta | undefined;
  /** Creates a bucket; returns undefined when it already exists. */
  createBucket(init: {
    name: string;
    projectNumber: string;
    location?: string;
    storageClass?: string;
    uniformBucketLevelAccess?: boolean;
  }): BucketMeta | undefined;
  listBuckets(projectNumber?: string): BucketMeta[];
  deleteBucket(name: string): boolean;
  getPolicy(bucket: string): IamPolicy | undefined;
  /** Replaces the policy; returns undefined when `etag` is given and stale. */
  setPolicy(
    bucket: string,
    policy: Omit<IamPolicy, "etag" | "kind" | "resourceId">,
    etag?: string,
  ): IamPolicy | undefined;
  /** Writes (or overwrites, with a new generation) an object. */
  putObject(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    metadata?: Record<string, string>,
    extra?: { readonly contentEncoding?: string },
  ): ObjectMeta;
  getObject(bucket: string, name: string, generation?: string): ObjectMeta | undefined;
  /** The object's bytes, or undefined if that generation is gone. */
  readObject(bucket: string, name: string, generation?: string): Buffer | undefined;
  deleteObject(bucket: string, name: string): boolean;
  /** Names in byte-wise (UTF-8) lexicographic order, starting strictly after `startAfter`. */
  listObjects(bucket: string, options: { prefix?: string; startAfter?: string; limit: number }): ObjectMeta[];
}

/** Fault injection settings (off by default); read per request, so they can change at run time. */
export interface FaultConfig {
  /** Probability of answering 429 / 503 instead of serving. */
  rate429: number;
  rate503: number;
  /** When set, 429/503 carry `Retry-After: N` seconds. */
  retryAfterSeconds?: number;
  /** Probability of destroying the socket halfway through a media body. */
  resetRate: number;
  /** Probability of ending a media body early (Content-Length promised, fewer bytes sent). */
  truncateRate: number;
  /** Probability of flipping bytes in a media body while sending the true hash headers. */
  corruptRate: number;
  /** Added latency per request, ms. */
  latencyMs: number;
  /** Fraction of instances an export fails to write (reported in counter.failure). */
  exportFailureRate: number;
  /** Which request paths faults apply to (substring match); empty = all media and API paths. */
  pathFilter?: string;
  /** Seed for the fault RNG, for reproducible runs. */
  seed?: number;
}

export const noFaults: FaultConfig = {
  rate429: 0,
  rate503: 0,
  resetRate: 0,
  truncateRate: 0,
  corruptRate: 0,
  latencyMs: 0,
  exportFailureRate: 0,
};

/** One service of the local cloud. `handle` returns false when the path is not its own. */
export interface EmulatorService {
  handle(req: IncomingMessage, res: ServerResponse, url: URL, ctx: RequestContext): Promise<boolean>;
}

/** What the server hands each service per request. */
export interface RequestContext {
  /** The server's own base URL, e.g. `http://127.0.0.1:4443` (for absolute links like mediaLink). */
  readonly baseUrl: string;
  readonly faults: FaultConfig;
  /** Uniform [0,1) from the fault RNG. */
  readonly random: () => number;
}
