import { fdatasync } from "node:fs";

/** Starts an fdatasync of `fd` and calls back once it ended (node:fs's signature). */
export type SyncFn = (fd: number, done: (err: NodeJS.ErrnoException | null) => void) => void;

/** Counts the background syncs running at once and caps them (one counter per process by default). */
export class SyncBudget {
  readonly limit: number;
  running = 0;
  constructor(limit: number) {
    this.limit = Math.max(1, Math.floor(limit));
  }
}

/**
 * libuv's 4 threads: three may sync in the background, one is left for the writes. Measured on
 * the 2-core bench disk (3 × 100 MiB; `dd conv=fdatasync` writes 300 MiB in 0.46–0.72 s): one
 * sync when each slice ended 0.85–0.94 s, one per file after every write (at most 3) 0.70–0.78 s,
 * at most 2: 0.71–0.81 s.
 */
export const PROCESS_SYNCS = new SyncBudget(3);

/**
 * Sends the bytes of a file being written to the disk while the rest is still coming: `kick`
 * (after each write) starts an fdatasync in the background unless one already runs on this file
 * or the budget is spent. The kernel starts writing dirty pages back only at its limits (seconds
 * old, or a tenth of memory), so without it a big download reaches the disk only at its final
 * sync, after its last byte, and the disk's whole time is added to the download's.
 *
 * A background sync makes nothing durable by itself: the commit stage's barrier still syncs the
 * file. Its error is kept for `idle`, because Linux reports a writeback error once per file
 * descriptor, so the final sync on the same descriptor would not see an error this one consumed.
 */
export class Writeback {
  readonly #fd: number;
  readonly #sync: SyncFn;
  readonly #budget: SyncBudget;
  #running: Promise<void> | undefined;
  #error: NodeJS.ErrnoException | undefined;
  constructor(fd: number, sync: SyncFn = fdatasync, budget: SyncBudget = PROCESS_SYNCS) {
    this.#fd = fd;
    this.#sync = sync;
    this.#budget = budget;
  }
  /** Starts a background sync, if none runs on this file, the budget allows and none failed. */
  kick(): void {
    if (this.#running !== undefined || this.#error !== undefined || this.#budget.running >= this.#budget.limit) return;
    this.#budget.running++;
    this.#running = new Promise<void>((resolve) =>
      this.#sync(this.#fd, (err) => {
        this.#budget.running--;
        if (err !== null) this.#error = err;
        this.#running = undefined;
        resolve();
      }),
    );
  }
  /** Waits for the background sync in flight (so none runs when the descriptor is closed); throws the error one met. */
  async idle(): Promise<void> {
    await this.#running;
    if (this.#error !== undefined) throw this.#error;
  }
}
