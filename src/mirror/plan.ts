import { compareUtf8 } from "../core/utf8-order.ts";
import { checkRelativeName } from "../core/safe-path.ts";
import type { LocalEntry } from "./local-walk.ts";
import type { ManifestEntry } from "./manifest.ts";
import type { RemoteObject } from "./ports.ts";
import { shardOf } from "./shard.ts";

/**
 * The pure half of the mirror (rclone's march + per-pair decisions): which remote names are
 * acceptable, how the two sorted streams pair up, and what to do with each pair. No I/O here.
 */

/** A listed object accepted for mirroring, with its path relative to the destination. */
export interface Accepted {
  readonly rel: string;
  readonly obj: RemoteObject;
}

export type NameVerdict =
  | { readonly kind: "accept"; readonly rel: string }
  /** A zero-byte `dir/` folder placeholder (Cloud Console "Create folder"): a directory, `rel` without the `/` ("" = the root). */
  | { readonly kind: "directory"; readonly rel: string }
  | { readonly kind: "other-shard" }
  | { readonly kind: "refuse"; readonly reason: string };

/**
 * Classifies listed names in listing order: strips the prefix, takes only this shard, refuses
 * names that would escape or alias a local path, and refuses a name whose parent is also an
 * object (`a` and `a/b` cannot both be local paths; the file `a`, listed first, wins). Keeps only
 * the few accepted names that can still be such a parent, so memory stays flat.
 */
export class NameFilter {
  readonly #prefix: string;
  readonly #shard: { readonly index: number; readonly count: number } | undefined;
  #openFiles: string[] = [];

  constructor(prefix: string, shard?: { readonly index: number; readonly count: number }) {
    this.#prefix = prefix;
    this.#shard = shard;
  }

  /** @param size the listed size: only a zero-byte name ending in `/` is a folder placeholder. */
  classify(name: string, size = -1): NameVerdict {
    // Clashes are tracked over every name (not just this shard's), so all shards agree on them.
    const mine = inShard(name, this.#shard);
    const verdict = this.#check(name, size);
    return mine ? verdict : { kind: "other-shard" };
  }

  #check(name: string, size: number): NameVerdict {
    if (!name.startsWith(this.#prefix))
      return { kind: "refuse", reason: `not under the listed prefix '${this.#prefix}'` };
    const rel = name.slice(this.#prefix.length);
    // `prefix/` itself (rel "") is the folder being mirrored: the destination root.
    if (size === 0 && (rel === "" || rel.endsWith("/"))) return this.#placeholder(rel.replace(/\/$/, ""));
    const check = checkRelativeName(rel);
    if (!check.ok) return { kind: "refuse", reason: check.reason };
    // Names under `f/` sort in [`f/`, `f0`): once past `f/` without the prefix, `f` cannot clash.
    this.#openFiles = this.#openFiles.filter((f) => rel.startsWith(`${f}/`) || compareUtf8(rel, `${f}/`) < 0);
    const parent = this.#openFiles.find((f) => rel.startsWith(`${f}/`));
    if (parent !== undefined)
      return { kind: "refuse", reason: `'${parent}' is also an object (a file), so it cannot be a directory too` };
    this.#openFiles.push(rel);
    return { kind: "accept", rel };
  }

  /** `dir/` with no bytes: checked like a file name (no `..`, no `a//`), then a directory. */
  #placeholder(dir: string): NameVerdict {
    if (dir === "") return { kind: "directory", rel: "" };
    const check = checkRelativeName(dir);
    if (!check.ok) return { kind: "refuse", reason: check.reason };
    const parent = this.#openFiles.find((f) => dir === f || dir.startsWith(`${f}/`));
    if (parent !== undefined)
      return { kind: "refuse", reason: `'${parent}' is also an object (a file), so it cannot be a directory too` };
    return { kind: "directory", rel: dir };
  }
}

/** Whether an object name belongs to this shard (always, without sharding). */
export function inShard(name: string, shard: { readonly index: number; readonly count: number } | undefined): boolean {
  return shard === undefined || shardOf(name, shard.count) === shard.index;
}

/** One step of the march: a name on the source side, the destination side, or both. */
export type Pair =
  | { readonly remote: Accepted; readonly local: LocalEntry | undefined }
  | { readonly remote: undefined; readonly local: LocalEntry };

/**
 * Merges two streams sorted in UTF-8 byte order of `rel` into pairs, in lock step, holding one
 * item of each side. Throws if either side is out of order: pairing (and deleting) on a broken
 * order would be wrong.
 */
export async function* march(remote: AsyncIterable<Accepted>, local: AsyncIterable<LocalEntry>): AsyncGenerator<Pair> {
  let lastLocal: LocalEntry | undefined;
  const ri = remote[Symbol.asyncIterator]();
  const li = local[Symbol.asyncIterator]();
  let lastR: string | undefined;
  const nextR = async () => {
    const n = await ri.next();
    if (n.done === true) return undefined;
    if (lastR !== undefined && compareUtf8(n.value.rel, lastR) <= 0)
      throw new Error(
        `the bucket listing is not in byte order ('${lastR}' then '${n.value.rel}'); refusing to continue`,
      );
    lastR = n.value.rel;
    return n.value;
  };
  const nextL = async () => {
    const n = await li.next();
    if (n.done === true) return undefined;
    if (lastLocal !== undefined && compareLocal(n.value, lastLocal) <= 0)
      throw new Error(`the local walk is not in byte order ('${lastLocal.rel}' then '${n.value.rel}')`);
    lastLocal = n.value;
    return n.value;
  };
  try {
    let r = await nextR();
    let l = await nextL();
    while (r !== undefined || l !== undefined) {
      const c = r === undefined ? 1 : l === undefined ? -1 : compareRemoteLocal(r.rel, l);
      if (c < 0) {
        yield { remote: r!, local: undefined };
        r = await nextR();
      } else if (c > 0) {
        yield { remote: undefined, local: l! };
        l = await nextL();
      } else {
        yield { remote: r!, local: l };
        r = await nextR();
        l = await nextL();
      }
    }
  } finally {
    await ri.return?.();
    await li.return?.();
  }
}

/**
 * Byte order of a remote name against a local entry. A local name that is not valid UTF-8 is
 * compared by its raw bytes (no object name can equal it: it is destination-only).
 */
export function compareRemoteLocal(rel: string, local: LocalEntry): number {
  if (local.raw === undefined) return compareUtf8(rel, local.rel);
  return Buffer.compare(Buffer.from(rel), local.raw) || -1;
}

/** Byte order of two local entries (raw bytes when either name is not valid UTF-8). */
export function compareLocal(a: LocalEntry, b: LocalEntry): number {
  if (a.raw === undefined && b.raw === undefined) return compareUtf8(a.rel, b.rel);
  return Buffer.compare(a.raw ?? Buffer.from(a.rel), b.raw ?? Buffer.from(b.rel));
}

/** What stat says about the local file of a pair. */
export interface LocalState {
  readonly type: LocalEntry["type"];
  readonly size: number;
  readonly mtimeNs: string;
  readonly ino: string;
}

export type Decision =
  | { readonly action: "download"; readonly why: "new" | "size differs" | "content differs" | "local file differs" }
  /** Same content proven by the manifest and an unchanged stat; `record` when the generation moved. */
  | { readonly action: "skip"; readonly record: boolean }
  /** Same size but the manifest cannot vouch for the local file: hash it to decide. */
  | { readonly action: "hash" }
  | { readonly action: "refuse"; readonly reason: string };

/** The decision for an accepted object given its local file (if any) and manifest entry. */
export function decide(obj: RemoteObject, local: LocalState | undefined, entry: ManifestEntry | undefined): Decision {
  if (local === undefined) return { action: "download", why: "new" };
  if (local.type === "symlink")
    return { action: "refuse", reason: "the destination path is a symlink; refusing to replace or follow it" };
  if (local.type !== "file")
    return { action: "refuse", reason: "the destination path exists and is not a regular file" };
  if (local.size !== obj.size) return { action: "download", why: "size differs" };
  // Nothing to hash against: only the manifest (size + generation) can vouch for the file.
  if (hasNoHash(obj) && entry === undefined) return { action: "download", why: "content differs" };
  if (entry !== undefined && entry.size === local.size && entry.mtimeNs === local.mtimeNs && entry.ino === local.ino) {
    if (!sameContent(obj, entry)) return { action: "download", why: "content differs" };
    return { action: "skip", record: entry.generation !== obj.generation || entry.etag !== obj.etag };
  }
  return { action: "hash" };
}

/**
 * Whether the remote object and recorded (or computed) digests denote the same bytes. An object
 * listed with neither CRC32C nor MD5 is compared by what the manifest recorded when it was
 * downloaded: the same size and generation (a generation's bytes never change), and the same
 * ETag when both sides have one. Computed digests alone (no manifest entry) cannot vouch for it.
 */
export function sameContent(
  obj: RemoteObject,
  digests: {
    readonly crc32c?: string | undefined;
    readonly md5?: string | undefined;
    readonly size?: number;
    readonly generation?: string;
    readonly etag?: string | undefined;
  },
): boolean {
  if (obj.crc32c !== undefined && digests.crc32c !== undefined) return obj.crc32c === digests.crc32c;
  if (obj.md5Hash !== undefined && digests.md5 !== undefined) return obj.md5Hash === digests.md5;
  if (hasNoHash(obj) && digests.generation !== undefined)
    return (
      digests.size === obj.size &&
      digests.generation === obj.generation &&
      (obj.etag === undefined || digests.etag === undefined || obj.etag === digests.etag)
    );
  return false;
}

/** Listed without CRC32C and MD5 (some composite or third-party objects). */
export function hasNoHash(obj: RemoteObject): boolean {
  return obj.crc32c === undefined && obj.md5Hash === undefined;
}

/** What to do with a destination-only entry. */
export type ExtraDecision = "delete" | "keep" | "remove-temp" | "other-shard";

/**
 * Destination-only entries: leftover temp files of an interrupted run are always ours to remove
 * (once older than `staleTempMs`, so a concurrent writer's are left alone); other files are
 * deleted only with `--delete`, and with `--shard` only those of this shard.
 */
export function decideExtra(
  local: LocalEntry,
  objectName: string,
  opts: { readonly delete: boolean; readonly shard?: { readonly index: number; readonly count: number } | undefined },
): ExtraDecision {
  if (local.type === "temp") return "remove-temp";
  if (!inShard(objectName, opts.shard)) return "other-shard";
  return opts.delete ? "delete" : "keep";
}

/**
 * Deletes run only after a clean run and within the guard (rclone: "not deleting files as there
 * were IO errors"). Returns why not, or undefined when deleting is allowed.
 */
export function deleteBlocker(
  s: { readonly failed: number; readonly refused: number; readonly complete: boolean },
  pending: number,
  maxDelete: number | undefined,
): string | undefined {
  if (!s.complete) return "the listing or the local walk did not finish";
  if (s.failed > 0) return `${s.failed} download(s) failed`;
  if (s.refused > 0) return `${s.refused} name(s) were refused`;
  if (maxDelete !== undefined && pending > maxDelete)
    return `${pending} files to delete exceed --max-delete ${maxDelete}`;
  return undefined;
}
