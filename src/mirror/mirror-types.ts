import type { Clock } from "../core/clock.ts";
import { UsageError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import type { RetryPolicy } from "../core/retry.ts";
import type { RemoteSource } from "./ports.ts";

/** The mirror's contract: its events, options and summary (the run itself is in mirror.ts). */

export type MirrorEvent =
  | {
      readonly kind: "mirror.start";
      readonly source: string;
      readonly dest: string;
      readonly concurrency: number;
      readonly dryRun: boolean;
    }
  | {
      readonly kind: "mirror.file";
      readonly name: string;
      readonly action: "downloaded" | "skipped" | "would-download";
      readonly bytes: number;
    }
  | { readonly kind: "mirror.refused"; readonly name: string; readonly reason: string }
  /** The manifest could not be read: set aside (`movedTo`) and rebuilt by hashing the files on disk. */
  | {
      readonly kind: "mirror.manifest-reset";
      readonly file: string;
      readonly movedTo?: string;
      readonly reason: string;
    }
  | { readonly kind: "mirror.failed"; readonly name: string; readonly reason: string }
  | {
      readonly kind: "mirror.retry";
      readonly name: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly reason: string;
    }
  | { readonly kind: "mirror.delete"; readonly path: string; readonly action: "deleted" | "would-delete" }
  | { readonly kind: "mirror.delete-skipped"; readonly pending: number; readonly reason: string }
  | {
      readonly kind: "mirror.progress";
      readonly listed: number;
      readonly downloaded: number;
      readonly skipped: number;
      readonly failed: number;
      readonly bytes: number;
      /** Bytes of every download decided so far (known in full once `listingDone`). */
      readonly plannedBytes: number;
      readonly listingDone: boolean;
      readonly elapsedMs: number;
    }
  | { readonly kind: "mirror.done"; readonly summary: MirrorSummary };

export interface MirrorOptions {
  /** The bucket side (src/gcp/gcs-objects.ts over the JSON API; test doubles in tests). */
  readonly source: RemoteSource;
  readonly bucket: string;
  /** Object prefix treated as a directory ("" = whole bucket): `PREFIX/x/y` → `dest/x/y`. */
  readonly prefix: string;
  readonly dest: string;
  readonly concurrency?: number;
  /** Delete destination-only files, only after a clean run. */
  readonly delete?: boolean;
  /** With `delete`: refuse to delete more than this many files (nothing is deleted then). */
  readonly maxDelete?: number;
  readonly dryRun?: boolean;
  readonly shard?: { readonly index: number; readonly count: number };
  readonly onEvent?: EventSink<MirrorEvent>;
  readonly signal?: AbortSignal;
  readonly clock?: Clock;
  readonly retry?: RetryPolicy;
  /**
   * Durability barriers around each commit batch (default true): data synced before the renames,
   * names synced before the manifest rows (commit-queue.ts). False: no barriers (`--no-fsync`).
   */
  readonly fsync?: boolean;
  /** Leftover temp files older than this are removed (default 60 s; a younger one may be a concurrent run's). */
  readonly staleTempMs?: number;
  /** With `delete`: a listing of no objects at all is taken at its word (default: exit 2, delete nothing). */
  readonly allowEmptySource?: boolean;
  /**
   * The idle timeout of the source's reads (ms), from which each object's total budget across all
   * attempts is derived (download.ts `defaultBudgetMs`); without it there is no budget.
   */
  readonly idleTimeoutMs?: number;
}

/** `--delete` with a listing of nothing (a typo'd prefix): nothing is deleted, exit 2. */
export class EmptySourceError extends UsageError {
  constructor(source: string) {
    super(`source lists nothing: check the prefix (${source} has no objects; nothing was deleted)`, {
      hint: "pass --allow-empty-source if the prefix really is empty and DIR should be emptied",
    });
  }
}

export interface MirrorSummary {
  listed: number;
  downloaded: number;
  skipped: number;
  deleted: number;
  failed: number;
  refused: number;
  bytes: number;
  durationMs: number;
  /** Local files hashed because the manifest could not vouch for them. */
  hashed: number;
  /** Zero-byte `dir/` folder placeholders, made (or found) as directories. */
  directories: number;
  /** Objects listed with neither CRC32C nor MD5: verified by size only, compared by size + generation. */
  noHash: number;
  /** Dry run: what would happen. */
  wouldDownload: number;
  wouldDelete: number;
  /** Why `--delete` deleted nothing, if it did not. */
  deleteSkipped?: string;
  /** False when the listing or the local walk stopped early (then nothing is deleted). */
  complete: boolean;
  /**
   * Whether the destination was walked: with `delete`, or when a run before this one did not end
   * cleanly (its temp files are swept). Otherwise each listed name was probed with `lstat` alone.
   */
  walked: boolean;
  /** The first 100 failures and refusals, with reasons. */
  failures: Array<{ name: string; reason: string }>;
  /** Set when the destination stopped taking files (full, over quota, read-only): the run stopped there. */
  destinationFault?: string;
}
