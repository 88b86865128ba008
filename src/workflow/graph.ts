import type { RetryPolicy } from "../core/retry.ts";
import type { StepRecord } from "./state.ts";

/**
 * How a step may be repeated (DESIGN §4):
 * - `idempotent`: safe to redo (bucket, IAM check/grant, annotations); not journaled as started.
 * - `at-most-once`: must not be repeated blindly (an export's POST): journaled `started` before it
 *   runs; a rerun that finds `started` calls it again as `resumed`, and it adopts what it may have done.
 * - `resumable`: long work that picks up where it stopped (an operation wait, a mirror).
 */
export type Idempotency = "idempotent" | "at-most-once" | "resumable";

/** A typed handle on a step, returned by `Workflow.step`; its result type rides along. */
export interface StepRef<T = unknown> {
  readonly key: string;
  /** Phantom: never set. */
  readonly __result?: T;
}

/** A step's options: data, read by the planner and the engine. */
export interface StepOptions<T = unknown> {
  readonly idempotency: Idempotency;
  /** What the step does, for `plan` and progress ("ensure gs://b"). */
  readonly describe: string;
  /** Steps whose results this one needs: it starts when they are done. */
  readonly needs?: readonly StepRef[];
  /** Steps this one runs alongside and awaits before it finishes (`ctx.settled`), e.g. a mirror following its export's wait. */
  readonly follows?: readonly StepRef[];
  /** A group shown together in `plan` and `status` (one per store: `train`, `test`). */
  readonly lane?: string;
  /** What the step acts on; a journal record for another input is not replayed. */
  readonly input?: string;
  /** Run on every run even when recorded done (incremental work such as a mirror). */
  readonly always?: boolean;
  /** A recorded result is verified again (the step runs again) when any of these steps will run (`export:*` matches a key prefix). */
  readonly recheckWhen?: readonly string[];
  /** Transient errors retried with this policy (idempotent steps only). */
  readonly retry?: RetryPolicy;
  /** The step's own deadline; it is aborted after this long. */
  readonly timeoutMs?: number;
  /** Errors that end the step for good (journaled `failed`); others leave it resumable. */
  readonly terminal?: (err: unknown) => boolean;
  /** On replay, whether a recorded result can still be used (checked only when a dependent will run). */
  readonly stillValid?: (result: T) => Promise<boolean>;
  /** One line about a result, for progress and `status`. */
  readonly summarize?: (result: T) => string;
}

/** What a step function gets. */
export interface StepContext {
  readonly key: string;
  readonly signal: AbortSignal;
  /** An earlier run started this step and did not record its end (adopt or resume). */
  readonly resumed: boolean;
  /** The step was recorded done and runs again only to verify it (`recheckWhen`). */
  readonly recheck: boolean;
  /** When the step was first started (ISO time), kept across resumes. */
  readonly startedAt: string;
  /** The result of a step in `needs` (done before this one started). */
  get<T>(ref: StepRef<T>): T;
  /** The result of a step in `follows`, once it is done (rejects if it fails or cannot run). */
  settled<T>(ref: StepRef<T>): Promise<T>;
  /** A snapshot of the whole journal (e.g. operation names other steps recorded). */
  journal(): Readonly<Record<string, StepRecord>>;
  /** Merges `notes` into this step's journal record, durably, before resolving (at-most-once and resumable steps). */
  note(notes: Record<string, unknown>): Promise<void>;
}

export interface StepDef<T = unknown> {
  readonly key: string;
  readonly options: StepOptions<T>;
  readonly run: (ctx: StepContext) => Promise<T>;
}

/** A workflow: steps in declaration order, each depending only on steps declared before it. */
export class Workflow {
  readonly steps: StepDef[] = [];
  #keys = new Set<string>();

  /** Adds a step; returns its handle for `needs`/`follows`/`ctx.get`. */
  step<T>(key: string, options: StepOptions<NoInfer<T>>, run: (ctx: StepContext) => Promise<T>): StepRef<T> {
    if (this.#keys.has(key)) throw new Error(`workflow: duplicate step key "${key}"`);
    for (const d of [...(options.needs ?? []), ...(options.follows ?? [])])
      if (!this.#keys.has(d.key)) throw new Error(`workflow: step "${key}" depends on "${d.key}", declared later`);
    if (options.retry !== undefined && options.idempotency !== "idempotent")
      throw new Error(`workflow: step "${key}" is ${options.idempotency}; only idempotent steps are retried blindly`);
    this.#keys.add(key);
    this.steps.push({ key, options: options as StepOptions, run });
    return { key };
  }
}

/**
 * What a run would do with a step:
 * `skip` replay the recorded result; `run` do it; `resume` continue a started at-most-once or
 * resumable step (adopting what it did); `recheck` verify a recorded result again.
 */
export type PlannedAction = "skip" | "run" | "resume" | "recheck";

export interface PlannedStep {
  readonly key: string;
  readonly lane?: string;
  readonly idempotency: Idempotency;
  readonly needs: readonly string[];
  readonly follows: readonly string[];
  readonly action: PlannedAction;
  /** Why (the journal record, the flag, the dependency that forces it). */
  readonly reason: string;
  readonly describe: string;
  readonly record?: StepRecord;
  /** The recorded result in one line (`summarize`), when there is one. */
  readonly summary?: string;
}

export interface PlanFlags {
  /** Redo every step (at-most-once steps still adopt what an interrupted run started). */
  readonly force?: boolean;
  /** Steps to redo although recorded done (e.g. `--fresh-export`: every export). */
  readonly redo?: (key: string) => boolean;
}

/**
 * The plan of a run: for each step, in order, whether it is replayed, run, resumed or re-verified,
 * from the graph and the journal alone (pure: no I/O, same input → same plan).
 */
export function planWorkflow(
  wf: Workflow,
  journal: Readonly<Record<string, StepRecord>>,
  flags: PlanFlags = {},
): PlannedStep[] {
  const planned = new Map<string, PlannedStep>();
  const failedDependent = (key: string) =>
    wf.steps.some((s) => s.options.needs?.some((n) => n.key === key) === true && journal[s.key]?.status === "failed");
  const dependentInProgress = (key: string) =>
    wf.steps.some(
      (s) =>
        s.options.always !== true &&
        s.options.needs?.some((n) => n.key === key) === true &&
        journal[s.key]?.status === "started",
    );
  for (const s of wf.steps) {
    const o = s.options;
    const rec = journal[s.key];
    const usable = rec !== undefined && (o.input === undefined || rec.input === o.input);
    const changedNeed = (o.needs ?? []).find((n) => {
      const p = planned.get(n.key)!;
      return p.action !== "skip" && p.action !== "recheck" && p.idempotency !== "idempotent";
    });
    let action: PlannedAction;
    let reason: string;
    if (!usable) {
      action = "run";
      reason = rec === undefined ? "not done yet" : `recorded for ${rec.input ?? "another input"}`;
    } else if (rec.status === "started" && o.idempotency !== "idempotent") {
      action = "resume";
      reason = `started at ${rec.startedAt}, not finished`;
    } else if (rec.status !== "done") {
      action = "run";
      reason = rec.status === "failed" ? `failed: ${rec.error ?? "?"}` : "interrupted";
    } else if (o.idempotency === "at-most-once" && failedDependent(s.key)) {
      action = "run";
      reason = "what it started failed";
    } else if (o.idempotency === "at-most-once" && dependentInProgress(s.key)) {
      action = "skip";
      reason = `done at ${rec.finishedAt ?? rec.startedAt}; what it started is still being followed`;
    } else if (flags.force === true) {
      action = "run";
      reason = "--force";
    } else if (o.always === true) {
      action = "run";
      reason = "runs every time (incremental)";
    } else if (flags.redo?.(s.key) === true) {
      action = "run";
      reason = "asked to redo it";
    } else if (changedNeed !== undefined) {
      action = "run";
      reason = `${changedNeed.key} runs again`;
    } else {
      action = "skip";
      reason = `done at ${rec.finishedAt ?? rec.startedAt}`;
    }
    planned.set(s.key, {
      key: s.key,
      ...(o.lane === undefined ? {} : { lane: o.lane }),
      idempotency: o.idempotency,
      needs: (o.needs ?? []).map((n) => n.key),
      follows: (o.follows ?? []).map((n) => n.key),
      action,
      reason,
      describe: o.describe,
      ...(rec === undefined ? {} : { record: rec }),
      ...(rec?.result === undefined || o.summarize === undefined
        ? {}
        : { summary: safeSummary(o.summarize, rec.result) }),
    });
  }
  // Re-verification looks forward (a precondition is checked again when a later step will run).
  const running = [...planned.values()].filter((p) => p.action !== "skip").map((p) => p.key);
  for (const s of wf.steps) {
    const p = planned.get(s.key)!;
    const why = running.filter(
      (k) => k !== s.key && (s.options.recheckWhen ?? []).some((pattern) => matches(pattern, k)),
    );
    if (p.action === "skip" && why.length > 0)
      planned.set(s.key, {
        ...p,
        action: "recheck",
        reason: `${p.reason}; verified again because ${why.join(", ")} will run`,
      });
  }
  return [...planned.values()];
}

/** `export:*` matches every key that starts with `export:`; anything else matches itself. */
export function matches(pattern: string, key: string): boolean {
  return pattern.endsWith("*") ? key.startsWith(pattern.slice(0, -1)) : pattern === key;
}

function safeSummary(summarize: (r: never) => string, result: unknown): string | undefined {
  try {
    return summarize(result as never);
  } catch {
    return undefined; // a record from an older version with another shape
  }
}
