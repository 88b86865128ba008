import { readFile } from "node:fs/promises";
import path from "node:path";
import { replaceFileAtomic } from "../core/atomic-file.ts";
import { destinationFault, HcexportError } from "../core/errors.ts";

/**
 * One step's journal record. `started` is written before an at-most-once or resumable step does
 * anything outside (an export's POST, a poll), so a rerun knows it may have to adopt or resume.
 */
export interface StepRecord {
  status: "started" | "done" | "failed";
  /** What the step acted on (bucket, member, store → URI): a record for another input is not replayed. */
  input?: string;
  /** When the step was first started (kept across resumes: the adoption window of an export). */
  startedAt: string;
  finishedAt?: string;
  attempts: number;
  /** The step's JSON result, replayed by later runs. */
  result?: unknown;
  /**
   * What a started at-most-once step noted while it ran (`ctx.note`), kept across resumes until it
   * is done: e.g. an export's `posting` time before its POST and the `operation` it got back. `{}`
   * when it noted nothing yet (absent in records of hcexport ≤ 0.2, which noted nothing).
   */
  notes?: Record<string, unknown>;
  error?: string;
}

/** What `.hcexport/state.json` holds: the journal of step records, enough to resume and to answer `status`. */
export interface RunState {
  version: 2;
  /** The Healthcare API base the checkpoints belong to; other endpoints' state is not resumed. */
  endpoint?: string;
  /** by step key (`bucket`, `iam`, `export:train`, `wait:train`, `mirror:train`, `annotations`, …) */
  steps: Record<string, StepRecord>;
  lastRun?: { startedAt: string; finishedAt?: string; exitCode?: number; error?: string };
}

export const emptyState = (): RunState => ({ version: 2, steps: {} });

/**
 * Makes `state` belong to `endpoint`. Checkpoints recorded against another endpoint (another
 * local cloud, or Google instead of an emulator) name operations that do not exist here, so they
 * are dropped; returns whether that happened.
 */
export function adoptEndpoint(state: RunState, endpoint: string): boolean {
  if (state.endpoint === endpoint) return false;
  const stale = state.endpoint !== undefined || Object.keys(state.steps).length > 0;
  for (const k of Object.keys(state) as Array<keyof RunState>) delete state[k];
  Object.assign(state, emptyState(), { endpoint });
  return stale;
}

/** Where run state lives (a port: a file for real runs, memory for the demo and tests). */
export interface StateStore {
  readonly state: RunState;
  /** Applies a change and persists it (with every change made before it) before returning. */
  update(change: (s: RunState) => void): Promise<void>;
}

export class MemoryStateStore implements StateStore {
  readonly state: RunState;
  constructor(initial: RunState = emptyState()) {
    this.state = initial;
  }
  async update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
  }
}

/**
 * `DIR/state.json`, replaced atomically (temp + fsync + rename + dir fsync). Updates from steps
 * running concurrently go through one serialised writer: a change is applied at once, and its
 * `update` resolves when a write that began after it has landed, so a slow earlier write can
 * never overwrite a newer journal (changes that pile up during a write share the next one).
 */
export class FileStateStore implements StateStore {
  readonly file: string;
  readonly state: RunState;
  #version = 0;
  #written = 0;
  #writing: Promise<void> | undefined;
  private constructor(file: string, state: RunState) {
    this.file = file;
    this.state = state;
  }

  static async open(stateDir: string): Promise<FileStateStore> {
    const file = path.join(stateDir, "state.json");
    return new FileStateStore(file, await readState(file));
  }

  async update(change: (s: RunState) => void): Promise<void> {
    change(this.state);
    const mine = ++this.#version;
    while (this.#written < mine) {
      if (this.#writing === undefined) {
        const version = this.#version;
        const text = `${JSON.stringify(this.state, null, 2)}\n`;
        this.#writing = this.#write(text)
          .then(() => void (this.#written = Math.max(this.#written, version)))
          .finally(() => (this.#writing = undefined));
      }
      await this.#writing;
    }
  }

  async #write(text: string): Promise<void> {
    try {
      await replaceFileAtomic(this.file, text);
    } catch (err) {
      // Say which file could not be saved (a bare "ENOSPC: …, write" names neither file nor fix).
      const fault = destinationFault(err);
      throw new HcexportError(`cannot save the run state ${this.file}: ${fault ?? (err as Error).message}`, 1, {
        cause: err,
        ...(fault === undefined
          ? {}
          : {
              hint: fault.startsWith("EROFS")
                ? "make the state directory writable, then run again: finished steps are kept"
                : "free space (or raise the quota), then run again: finished steps are kept and the mirror resumes",
            }),
      });
    }
  }
}

/** Reads a state file (a version 1 file is migrated); a missing file is an empty state, a corrupt one an error that says what to do. */
export async function readState(file: string): Promise<RunState> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyState();
    throw err;
  }
  try {
    const s = JSON.parse(text) as RunState | StateV1;
    if (s.version === 1 && typeof s.exports === "object" && typeof s.mirrors === "object") return migrateV1(s);
    if (s.version !== 2 || typeof s.steps !== "object" || s.steps === null) throw new Error("unexpected shape");
    return s;
  } catch (err) {
    throw new HcexportError(`state file ${file} is unreadable: ${(err as Error).message}`, 1, {
      hint: `move it aside and run again: finished exports are then started again, which is harmless (an export overwrites objects with identical bytes) and the mirror stays incremental`,
    });
  }
}

/** The hand-checkpointed state of hcexport ≤ 0.1 (one record per kind of step). */
export interface StateV1 {
  version: 1;
  endpoint?: string;
  bucket?: { name: string; done: boolean; at: string; created: boolean };
  iam?: { member: string; done: boolean; at: string; granted: boolean };
  exports: Record<
    string,
    {
      store: string;
      uriPrefix: string;
      status: "starting" | "running" | "done" | "failed";
      operation?: string;
      startedAt: string;
      finishedAt?: string;
      counters?: { success: number; failure: number };
      error?: string;
    }
  >;
  mirrors: Record<string, { at: string } & Record<string, number | string>>;
  annotations?: { at: string; path: string } & Record<string, number | string>;
  lastRun?: RunState["lastRun"];
}

/** Version 1 → 2: each checkpoint becomes the journal record of the step that made it (pure). */
export function migrateV1(v1: StateV1): RunState {
  const steps: Record<string, StepRecord> = {};
  const done = (at: string, input: string | undefined, result: unknown): StepRecord => ({
    status: "done",
    ...(input === undefined ? {} : { input }),
    startedAt: at,
    finishedAt: at,
    attempts: 1,
    result,
  });
  if (v1.bucket?.done === true)
    steps["bucket"] = done(v1.bucket.at, `gs://${v1.bucket.name}`, {
      name: v1.bucket.name,
      created: v1.bucket.created,
    });
  if (v1.iam?.done === true)
    steps["iam"] = done(v1.iam.at, v1.iam.member, { member: v1.iam.member, granted: v1.iam.granted });
  for (const [prefix, e] of Object.entries(v1.exports)) {
    const input = `${e.store} → ${e.uriPrefix}`;
    if (e.status === "starting" || e.operation === undefined) {
      steps[`export:${prefix}`] = { status: "started", input, startedAt: e.startedAt, attempts: 1 };
      continue;
    }
    steps[`export:${prefix}`] = done(e.startedAt, input, { operation: e.operation, uriPrefix: e.uriPrefix });
    const wait: StepRecord = { status: "started", input: e.operation, startedAt: e.startedAt, attempts: 1 };
    if (e.status === "done") Object.assign(wait, done(e.finishedAt ?? e.startedAt, e.operation, e.counters ?? {}));
    if (e.status === "failed") Object.assign(wait, { status: "failed", error: e.error ?? "failed" });
    steps[`wait:${prefix}`] = wait;
  }
  for (const [prefix, m] of Object.entries(v1.mirrors)) steps[`mirror:${prefix}`] = done(m.at, undefined, m);
  if (v1.annotations !== undefined) steps["annotations"] = done(v1.annotations.at, undefined, v1.annotations);
  return {
    version: 2,
    ...(v1.endpoint === undefined ? {} : { endpoint: v1.endpoint }),
    steps,
    ...(v1.lastRun === undefined ? {} : { lastRun: v1.lastRun }),
  };
}
