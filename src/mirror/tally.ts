import type { Clock } from "../core/clock.ts";
import { destinationFault } from "../core/errors.ts";
import type { Manifest } from "./manifest.ts";
import type { EventSink } from "../core/events.ts";
import { MAX_FAILURES_KEPT } from "./apply-deletes.ts";
import type { MirrorEvent, MirrorSummary } from "./mirror-types.ts";

const PROGRESS_MS = 250;

export function emptySummary(): MirrorSummary {
  return {
    listed: 0,
    downloaded: 0,
    skipped: 0,
    deleted: 0,
    failed: 0,
    refused: 0,
    bytes: 0,
    durationMs: 0,
    hashed: 0,
    directories: 0,
    noHash: 0,
    wouldDownload: 0,
    wouldDelete: 0,
    complete: true,
    walked: true,
    failures: [],
  };
}

/**
 * The mirror's bookkeeping, shared by its stages: the summary, the events that go with each
 * count, and the throttled progress event. No I/O except `flush` (the manifest's, at each tick).
 */
export class MirrorTally {
  readonly s: MirrorSummary = emptySummary();
  readonly emit: EventSink<MirrorEvent>;
  readonly #clock: Clock;
  readonly #started: number;
  readonly #flush: () => void;
  #lastTick: number;
  /** Bytes of every download decided so far. */
  plannedBytes = 0;
  listingDone = false;
  /** A credentials/permission/bucket/DNS failure (`fatalFault`): every other object would fail alike. */
  fatal: Error | undefined;
  /**
   * Aborted once the run stops (`stop`, or a destination fault): the transfers' signal, so that
   * objects waiting for a connection never send their request and those in flight end at once.
   */
  readonly halt = new AbortController();

  constructor(emit: EventSink<MirrorEvent>, clock: Clock, flush: () => void) {
    this.emit = emit;
    this.#clock = clock;
    this.#started = clock.now();
    this.#lastTick = this.#started;
    this.#flush = flush;
  }

  get elapsedMs(): number {
    return this.#clock.now() - this.#started;
  }

  /** Whether the run must stop queueing work (a full or read-only destination, a fatal fault). */
  get stopped(): boolean {
    return this.s.destinationFault !== undefined || this.fatal !== undefined;
  }

  #note(name: string, reason: string): void {
    if (this.s.failures.length < MAX_FAILURES_KEPT) this.s.failures.push({ name, reason });
  }

  refuse(name: string, reason: string): void {
    this.s.refused++;
    this.#note(name, reason);
    this.emit({ kind: "mirror.refused", name, reason });
  }

  fail(name: string, reason: string): void {
    this.s.failed++;
    this.#note(name, reason);
    this.emit({ kind: "mirror.failed", name, reason });
  }

  /** Records a fatal fault (the first one wins) and stops the transfers. */
  stop(fatal: Error): void {
    this.fatal ??= fatal;
    this.halt.abort(this.fatal);
  }

  /** Records a full/read-only destination (and stops the transfers); true when `err` was one. */
  destination(err: unknown): boolean {
    const fault = destinationFault(err);
    if (fault === undefined) return false;
    this.s.destinationFault ??= fault;
    this.s.complete = false;
    this.halt.abort(err);
    return true;
  }

  downloaded(name: string, bytes: number): void {
    this.s.downloaded++;
    this.s.bytes += bytes;
    this.emit({ kind: "mirror.file", name, action: "downloaded", bytes });
  }

  skipped(name: string): void {
    this.s.skipped++;
    this.emit({ kind: "mirror.file", name, action: "skipped", bytes: 0 });
  }

  /** Commits the manifest's open transaction. */
  flush(): void {
    try {
      this.#flush();
    } catch (err) {
      // A full disk fails the manifest's write too: the files stay, the next run re-proves them by hash.
      if (!this.destination(err)) throw err;
    }
  }

  tick(force = false): void {
    const now = this.#clock.now();
    if (!force && now - this.#lastTick < PROGRESS_MS) return;
    this.#lastTick = now;
    this.flush();
    const s = this.s;
    this.emit({
      kind: "mirror.progress",
      listed: s.listed,
      downloaded: s.downloaded,
      skipped: s.skipped,
      failed: s.failed + s.refused,
      bytes: s.bytes,
      plannedBytes: this.plannedBytes,
      listingDone: this.listingDone,
      elapsedMs: now - this.#started,
    });
  }
}

/** An unsafe-name error's message without its "refusing unsafe name" lead (the name is reported beside it). */
export function refusalReason(err: Error): string {
  return err.message.replace(/^refusing unsafe name "(?:[^"\\]|\\.)*": /, "");
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Closes the manifest; a full disk failing its last write is recorded, other errors thrown. */
export function closeManifest(manifest: Manifest, tally: MirrorTally): void {
  try {
    manifest.close();
  } catch (err) {
    if (!tally.destination(err)) throw err;
  }
}
