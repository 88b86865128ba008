import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { crc32cBase64, md5Base64 } from "../../core/hashing.ts";
import { compareUtf8 } from "../../core/utf8-order.ts";
import type { BucketMeta, IamPolicy, ObjectMeta, ObjectStore } from "../types.ts";

interface BucketState {
  meta: BucketMeta;
  policy: IamPolicy;
  objects: Map<string, ObjectMeta>;
  /** Names in UTF-8 byte order, except the new ones still in `pending`. */
  sorted: string[];
  /** Names added since the last listing; merged into `sorted` (linear time) on the next one. */
  pending: string[];
  /**
   * Whether any name ever held a code unit ≥ U+D800. Until one does, UTF-16 order equals UTF-8
   * byte order and the much faster native string comparison is exact.
   */
  exotic: boolean;
  blobs: Map<string, Buffer>;
}

type JournalEntry =
  | { op: "bucket"; meta: BucketMeta }
  | { op: "deleteBucket"; name: string }
  | { op: "policy"; bucket: string; policy: IamPolicy }
  | { op: "put"; meta: ObjectMeta }
  | { op: "delete"; bucket: string; name: string };

/**
 * The emulated buckets. In memory by default; with `dataDir`, every change is appended to a
 * journal and object bytes are kept as files named by a hash of (bucket, name, generation) —
 * never by the object name — so state survives a restart.
 */
export class EmulatorObjectStore implements ObjectStore {
  readonly #buckets = new Map<string, BucketState>();
  readonly #dataDir: string | undefined;
  readonly #now: () => number;
  #lastGeneration = 0;
  #etagCounter = 1;

  constructor(options: { dataDir?: string; now?: () => number } = {}) {
    this.#dataDir = options.dataDir;
    this.#now = options.now ?? Date.now;
    if (this.#dataDir !== undefined) this.#load(this.#dataDir);
  }

  getBucket(name: string): BucketMeta | undefined {
    return this.#buckets.get(name)?.meta;
  }

  createBucket(init: {
    name: string;
    projectNumber: string;
    location?: string;
    storageClass?: string;
    uniformBucketLevelAccess?: boolean;
  }): BucketMeta | undefined {
    if (this.#buckets.has(init.name)) return undefined;
    const meta: BucketMeta = {
      name: init.name,
      projectNumber: init.projectNumber,
      location: (init.location ?? "US").toUpperCase(),
      storageClass: init.storageClass ?? "STANDARD",
      uniformBucketLevelAccess: init.uniformBucketLevelAccess ?? false,
      timeCreated: new Date(this.#now()).toISOString(),
      metageneration: "1",
    };
    this.#applyBucket(meta);
    this.#journal({ op: "bucket", meta });
    return meta;
  }

  listBuckets(projectNumber?: string): BucketMeta[] {
    return [...this.#buckets.values()]
      .map((b) => b.meta)
      .filter((m) => projectNumber === undefined || m.projectNumber === projectNumber)
      .sort((a, b) => compareUtf8(a.name, b.name));
  }

  deleteBucket(name: string): boolean {
    const b = this.#buckets.get(name);
    if (b === undefined || b.objects.size > 0) return false;
    this.#buckets.delete(name);
    this.#journal({ op: "deleteBucket", name });
    return true;
  }

  getPolicy(bucket: string): IamPolicy | undefined {
    const b = this.#buckets.get(bucket);
    return b === undefined ? undefined : structuredClone(b.policy);
  }

  setPolicy(
    bucket: string,
    policy: Omit<IamPolicy, "etag" | "kind" | "resourceId">,
    etag?: string,
  ): IamPolicy | undefined {
    const b = this.#buckets.get(bucket);
    if (b === undefined) return undefined;
    if (etag !== undefined && etag !== b.policy.etag) return undefined;
    const next: IamPolicy = {
      kind: "storage#policy",
      resourceId: `projects/_/buckets/${bucket}`,
      version: policy.version,
      etag: this.#nextEtag(),
      bindings: structuredClone(policy.bindings),
    };
    b.policy = next;
    this.#journal({ op: "policy", bucket, policy: next });
    return structuredClone(next);
  }

  putObject(
    bucket: string,
    name: string,
    data: Buffer,
    contentType: string,
    metadata?: Record<string, string>,
    extra?: { readonly contentEncoding?: string },
  ): ObjectMeta {
    const b = this.#mustBucket(bucket);
    const now = new Date(this.#now()).toISOString();
    const previous = b.objects.get(name);
    const meta: ObjectMeta = {
      bucket,
      name,
      generation: this.#nextGeneration(),
      metageneration: "1",
      size: data.length,
      md5Hash: md5Base64(data),
      crc32c: crc32cBase64(data),
      contentType,
      ...(extra?.contentEncoding === undefined || extra.contentEncoding === ""
        ? {}
        : { contentEncoding: extra.contentEncoding }),
      timeCreated: now,
      updated: now,
      ...(metadata === undefined ? {} : { metadata: { ...metadata } }),
    };
    if (this.#dataDir !== undefined) {
      const file = this.#blobPath(meta);
      const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
      writeFileSync(tmp, data);
      renameSync(tmp, file);
    } else {
      b.blobs.set(name, data);
    }
    this.#applyPut(b, meta);
    this.#journal({ op: "put", meta });
    if (previous !== undefined && this.#dataDir !== undefined) this.#removeBlob(previous);
    return meta;
  }

  getObject(bucket: string, name: string, generation?: string): ObjectMeta | undefined {
    const meta = this.#buckets.get(bucket)?.objects.get(name);
    if (meta === undefined || (generation !== undefined && generation !== meta.generation)) return undefined;
    return meta;
  }

  readObject(bucket: string, name: string, generation?: string): Buffer | undefined {
    const b = this.#buckets.get(bucket);
    const meta = this.getObject(bucket, name, generation);
    if (b === undefined || meta === undefined) return undefined;
    if (this.#dataDir === undefined) return b.blobs.get(name);
    try {
      return readFileSync(this.#blobPath(meta));
    } catch {
      return undefined;
    }
  }

  deleteObject(bucket: string, name: string): boolean {
    const b = this.#buckets.get(bucket);
    const meta = b?.objects.get(name);
    if (b === undefined || meta === undefined) return false;
    b.objects.delete(name);
    b.blobs.delete(name);
    removeName(b, name);
    this.#journal({ op: "delete", bucket, name });
    if (this.#dataDir !== undefined) this.#removeBlob(meta);
    return true;
  }

  listObjects(bucket: string, options: { prefix?: string; startAfter?: string; limit: number }): ObjectMeta[] {
    const b = this.#buckets.get(bucket);
    if (b === undefined) return [];
    const sorted = flushPending(b);
    const compare = comparator(b);
    const prefix = options.prefix ?? "";
    let i = lowerBound(sorted, prefix, compare);
    if (options.startAfter !== undefined && compare(options.startAfter, prefix) >= 0) {
      i = lowerBound(sorted, options.startAfter, compare);
      if (sorted[i] === options.startAfter) i++;
    }
    const out: ObjectMeta[] = [];
    for (; i < sorted.length && out.length < options.limit; i++) {
      const name = sorted[i]!;
      if (!name.startsWith(prefix)) break;
      out.push(b.objects.get(name)!);
    }
    return out;
  }

  /** Number of objects in a bucket (for tests and the admin endpoint). */
  objectCount(bucket: string): number {
    return this.#buckets.get(bucket)?.objects.size ?? 0;
  }

  #mustBucket(bucket: string): BucketState {
    const b = this.#buckets.get(bucket);
    if (b === undefined) throw new Error(`no such bucket: ${bucket}`);
    return b;
  }

  #applyBucket(meta: BucketMeta): void {
    this.#buckets.set(meta.name, {
      meta,
      policy: {
        kind: "storage#policy",
        resourceId: `projects/_/buckets/${meta.name}`,
        version: 1,
        etag: this.#nextEtag(),
        bindings: [
          {
            role: "roles/storage.legacyBucketOwner",
            members: [`projectEditor:${meta.projectNumber}`, `projectOwner:${meta.projectNumber}`],
          },
          { role: "roles/storage.legacyBucketReader", members: [`projectViewer:${meta.projectNumber}`] },
        ],
      },
      objects: new Map(),
      sorted: [],
      pending: [],
      exotic: false,
      blobs: new Map(),
    });
  }

  #applyPut(b: BucketState, meta: ObjectMeta): void {
    if (!b.objects.has(meta.name)) {
      b.pending.push(meta.name);
      if (!b.exotic && EXOTIC.test(meta.name)) b.exotic = true;
    }
    b.objects.set(meta.name, meta);
    this.#lastGeneration = Math.max(this.#lastGeneration, Number(meta.generation));
  }

  #nextGeneration(): string {
    // Real generations are microsecond timestamps; keep them increasing even within one microsecond.
    this.#lastGeneration = Math.max(this.#lastGeneration + 1, this.#now() * 1000);
    return String(this.#lastGeneration);
  }

  #nextEtag(): string {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(this.#etagCounter++));
    return b.subarray(b.findIndex((x) => x !== 0)).toString("base64");
  }

  #blobPath(meta: ObjectMeta): string {
    const id = createHash("sha256").update(`${meta.bucket}\0${meta.name}\0${meta.generation}`).digest("hex");
    return path.join(this.#dataDir!, "blobs", id);
  }

  #removeBlob(meta: ObjectMeta): void {
    try {
      unlinkSync(this.#blobPath(meta));
    } catch {
      // already gone
    }
  }

  #journal(entry: JournalEntry): void {
    if (this.#dataDir === undefined) return;
    appendFileSync(path.join(this.#dataDir, "journal.ndjson"), `${JSON.stringify(entry)}\n`);
  }

  #load(dir: string): void {
    mkdirSync(path.join(dir, "blobs"), { recursive: true });
    const journal = path.join(dir, "journal.ndjson");
    if (!existsSync(journal)) return;
    for (const line of readFileSync(journal, "utf8").split("\n")) {
      if (line.trim() === "") continue;
      let e: JournalEntry;
      try {
        e = JSON.parse(line) as JournalEntry;
      } catch {
        continue; // a torn last line after a crash
      }
      if (e.op === "bucket") this.#applyBucket(e.meta);
      else if (e.op === "deleteBucket") this.#buckets.delete(e.name);
      else if (e.op === "policy") {
        const b = this.#buckets.get(e.bucket);
        if (b !== undefined) b.policy = e.policy;
        this.#etagCounter = Math.max(this.#etagCounter, etagNumber(e.policy.etag) + 1);
      } else if (e.op === "put") {
        const b = this.#buckets.get(e.meta.bucket);
        if (b !== undefined) this.#applyPut(b, e.meta);
      } else if (e.op === "delete") {
        const b = this.#buckets.get(e.bucket);
        if (b?.objects.delete(e.name) === true) removeName(b, e.name);
      }
    }
    // Compact through a temporary file: a crash mid-write must not lose the journal.
    const tmp = `${journal}.${randomBytes(4).toString("hex")}.tmp`;
    writeFileSync(tmp, this.#snapshot());
    renameSync(tmp, journal);
  }

  /** The journal compacted to the current state. */
  #snapshot(): string {
    const lines: string[] = [];
    for (const b of this.#buckets.values()) {
      lines.push(
        JSON.stringify({ op: "bucket", meta: b.meta }),
        JSON.stringify({ op: "policy", bucket: b.meta.name, policy: b.policy }),
      );
      for (const meta of b.objects.values()) lines.push(JSON.stringify({ op: "put", meta }));
    }
    return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
  }
}

function etagNumber(etag: string): number {
  const b = Buffer.from(etag, "base64");
  let n = 0;
  for (const x of b) n = n * 256 + x;
  return n;
}

/** Code units where UTF-16 order and UTF-8 byte order disagree (surrogates and U+E000–FFFF). */
const EXOTIC = /[\uD800-\uFFFF]/;

function compareNative(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function comparator(b: BucketState): (x: string, y: string) => number {
  return b.exotic ? compareUtf8 : compareNative;
}

/** Merges the names added since the last listing into the sorted index and returns it. */
function flushPending(b: BucketState): string[] {
  if (b.pending.length === 0) return b.sorted;
  const compare = comparator(b);
  const add = b.pending.sort(compare);
  b.pending = [];
  const old = b.sorted;
  if (old.length === 0) {
    b.sorted = add;
    return add;
  }
  const merged = new Array<string>(old.length + add.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < old.length && j < add.length) merged[k++] = compare(old[i]!, add[j]!) <= 0 ? old[i++]! : add[j++]!;
  while (i < old.length) merged[k++] = old[i++]!;
  while (j < add.length) merged[k++] = add[j++]!;
  b.sorted = merged;
  return merged;
}

/** Drops a deleted name from the index (the caller already removed it from `objects`). */
function removeName(b: BucketState, name: string): void {
  const sorted = flushPending(b);
  const i = lowerBound(sorted, name, comparator(b));
  if (sorted[i] === name) sorted.splice(i, 1);
}

/** First index whose name is ≥ `key` in UTF-8 order. */
function lowerBound(sorted: readonly string[], key: string, compare: (a: string, b: string) => number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(sorted[mid]!, key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
