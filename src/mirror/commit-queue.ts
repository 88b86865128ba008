import path from "node:path";
import { discardStaged, renameStaged, type StagedFile, type WrittenFile } from "../core/atomic-file.ts";
import type { Barrier } from "../core/barrier.ts";

/**
 * The commit stage (issue #11): verified temp files join a batch; a full batch (files, bytes) or
 * an old one (ms) is committed with one data barrier, the renames, one barrier for the directory
 * entries, then each entry's `committed` (the mirror's manifest rows and events) and `onBatch`
 * (the manifest's flush). So a name only appears after its bytes are durable, and a manifest row
 * only after its name is. One batch commits at a time while the next one fills; `add` waits when
 * both are full, so memory stays bounded.
 */

export interface CommitEntry {
  /** The temp file to rename; absent for a file already in place whose row must wait for the barrier. */
  readonly staged?: StagedFile | undefined;
  /** Directory of an entry without `staged` (for the fdatasync barrier's directory pass). */
  readonly dir?: string;
  readonly bytes: number;
  /** After the rename and both barriers. Must not throw. */
  readonly committed: (written: WrittenFile | undefined) => void;
  /**
   * Not committed: the data barrier or the rename failed (the temp file is removed, nothing is
   * under the final name), or the names barrier did (the file is in place but gets no manifest
   * row, so the next run re-hashes it). Must not throw.
   */
  readonly failed: (err: unknown) => void;
}

export interface CommitQueueOptions {
  readonly barrier: Barrier;
  readonly maxFiles?: number;
  readonly maxBytes?: number;
  readonly maxDelayMs?: number;
  /** After each batch's `committed` calls (e.g. commit the manifest's transaction). May throw: the error is kept. */
  readonly onBatch?: () => void;
}

/** Defaults chosen by measurement (README, "Durability"): see scripts/bench.ts. */
export const COMMIT_MAX_FILES = 256;
export const COMMIT_MAX_BYTES = 64 * 1024 * 1024;
export const COMMIT_MAX_DELAY_MS = 200;

export class CommitQueue {
  readonly #barrier: Barrier;
  readonly #maxFiles: number;
  readonly #maxBytes: number;
  readonly #maxDelayMs: number;
  readonly #onBatch: (() => void) | undefined;
  #batch: CommitEntry[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #committing: Promise<void> | undefined;
  #error: unknown;
  /** Batches committed and entries committed (for tests and the summary). */
  batches = 0;

  constructor(o: CommitQueueOptions) {
    this.#barrier = o.barrier;
    this.#maxFiles = Math.max(1, o.maxFiles ?? COMMIT_MAX_FILES);
    this.#maxBytes = o.maxBytes ?? COMMIT_MAX_BYTES;
    this.#maxDelayMs = o.maxDelayMs ?? COMMIT_MAX_DELAY_MS;
    this.#onBatch = o.onBatch;
  }

  get pending(): number {
    return this.#batch.length;
  }

  /** Queues an entry; resolves once it is queued (waits while a full batch waits for the one committing). */
  async add(entry: CommitEntry): Promise<void> {
    while (this.#full() && this.#committing !== undefined) await this.#committing;
    this.#batch.push(entry);
    this.#bytes += entry.bytes;
    if (this.#full()) this.#start();
    else this.#timer ??= setTimeout(() => this.#start(), this.#maxDelayMs);
  }

  /** Commits everything queued and waits for it; rethrows an `onBatch` error. */
  async flush(): Promise<void> {
    while (this.#batch.length > 0 || this.#committing !== undefined) {
      if (this.#committing !== undefined) await this.#committing;
      else this.#start();
    }
    if (this.#error !== undefined) {
      const err = this.#error;
      this.#error = undefined;
      throw err;
    }
  }

  #full(): boolean {
    return this.#batch.length >= this.#maxFiles || this.#bytes >= this.#maxBytes;
  }

  /** Starts committing the open batch, unless a commit is running (its end starts the next). */
  #start(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#committing !== undefined || this.#batch.length === 0) return;
    const batch = this.#batch;
    this.#batch = [];
    this.#bytes = 0;
    this.#committing = this.#commit(batch)
      .catch((err: unknown) => {
        this.#error ??= err;
      })
      .finally(() => {
        this.#committing = undefined;
        if (this.#full()) this.#start();
        else if (this.#batch.length > 0) this.#timer ??= setTimeout(() => this.#start(), this.#maxDelayMs);
      });
  }

  async #commit(batch: CommitEntry[]): Promise<void> {
    this.batches++;
    try {
      await this.#barrier.data(batch.flatMap((e) => (e.staged === undefined ? [] : [e.staged.temp])));
    } catch (err) {
      for (const e of batch) {
        if (e.staged !== undefined) discardStaged(e.staged);
        e.failed(err);
      }
      return;
    }
    const landed: Array<{ entry: CommitEntry; written: WrittenFile | undefined }> = [];
    const dirs = new Set<string>();
    for (const e of batch) {
      if (e.staged === undefined) {
        landed.push({ entry: e, written: undefined });
        if (e.dir !== undefined) dirs.add(e.dir);
        continue;
      }
      try {
        landed.push({ entry: e, written: renameStaged(e.staged) });
        dirs.add(path.dirname(e.staged.path));
      } catch (err) {
        e.failed(err);
      }
    }
    try {
      if (landed.length > 0) await this.#barrier.names(dirs);
    } catch (err) {
      // The names exist but may not be durable: no manifest row (the next run re-hashes them).
      for (const { entry } of landed) entry.failed(err);
      return;
    }
    for (const { entry, written } of landed) entry.committed(written);
    try {
      this.#onBatch?.();
    } catch (err) {
      this.#error ??= err;
    }
  }
}
