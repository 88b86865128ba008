import type { DirectoryGuard } from "../core/directory-guard.ts";
import { UnsafeNameError } from "../core/errors.ts";
import type { NameFilter } from "./plan.ts";
import { hasNoHash, type Accepted } from "./plan.ts";
import type { RemoteSource } from "./ports.ts";
import { messageOf, refusalReason, type MirrorTally } from "./tally.ts";

/** What the listing stage reports besides the accepted objects it yields. */
export interface ListingSink {
  /** An object of this shard (accepted, refused or a folder placeholder). */
  listed(): void;
  refuse(name: string, reason: string): void;
  /** A zero-byte `dir/` folder placeholder: `rel` without the `/` ("" = the root). */
  directory(name: string, rel: string): Promise<void>;
  /** Listed with neither CRC32C nor MD5. */
  noHash(): void;
  /** The last page was classified. */
  done(): void;
}

/**
 * The listing stage (rclone's march source): the bucket's pages under `listPrefix`, classified
 * by the NameFilter (prefix stripped, this shard only, unsafe names and file/directory clashes
 * refused, folder placeholders made directories). Yields accepted objects in listing order; a
 * page is held only while it is classified. `counts.all` counts every object, other shards too
 * (zero means the source is empty).
 */
export async function* listAccepted(
  source: RemoteSource,
  bucket: string,
  listPrefix: string,
  filter: NameFilter,
  sink: ListingSink,
  counts: { all: number },
  signal?: AbortSignal,
): AsyncGenerator<Accepted> {
  for await (const page of source.listPages(bucket, listPrefix, signal)) {
    for (const obj of page) {
      counts.all++;
      const verdict = filter.classify(obj.name, obj.size);
      if (verdict.kind === "other-shard") continue;
      sink.listed();
      if (verdict.kind === "refuse") sink.refuse(obj.name, verdict.reason);
      else if (verdict.kind === "directory") await sink.directory(obj.name, verdict.rel);
      else {
        if (hasNoHash(obj)) sink.noHash();
        yield { rel: verdict.rel, obj };
      }
    }
  }
  sink.done();
}

/**
 * The listing's folder placeholders: each made an (empty) directory inside the destination
 * (never a file, never a refusal unless its path is unsafe); counted in `directories`.
 */
export function placeholderDirectory(
  guard: DirectoryGuard,
  dryRun: boolean,
  tally: MirrorTally,
): (name: string, rel: string) => Promise<void> {
  return async (name, rel) => {
    try {
      if (!dryRun && rel !== "") await guard.ensure(rel.split("/"), name);
      tally.s.directories++;
    } catch (err) {
      if (err instanceof UnsafeNameError) tally.refuse(name, refusalReason(err));
      else if (!tally.destination(err)) tally.fail(name, messageOf(err));
    }
  };
}
