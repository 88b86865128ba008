import { systemClock, type Clock } from "../core/clock.ts";
import { HcexportError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { withRetry } from "../core/retry.ts";
import { planWorkflow, type PlanFlags, type PlannedStep, type StepDef, type StepRef, type Workflow } from "./graph.ts";
import type { StateStore, StepRecord } from "./state.ts";

export type StepEvent =
  | {
      readonly kind: "step.start";
      readonly key: string;
      readonly step: string;
      readonly lane?: string;
      readonly action: PlannedStep["action"];
      readonly detail: string;
    }
  | {
      readonly kind: "step.done";
      readonly key: string;
      readonly step: string;
      readonly lane?: string;
      readonly replayed: boolean;
      readonly detail: string;
    }
  | {
      readonly kind: "step.failed";
      readonly key: string;
      readonly step: string;
      readonly lane?: string;
      readonly error: string;
    }
  | {
      readonly kind: "step.blocked";
      readonly key: string;
      readonly step: string;
      readonly lane?: string;
      readonly by: string;
    };

/** How one step ended in this run. */
export type StepOutcome =
  | { readonly status: "done"; readonly result: unknown; readonly replayed: boolean }
  | { readonly status: "failed"; readonly error: unknown }
  | { readonly status: "blocked"; readonly by: string };

export interface RunWorkflowOptions extends PlanFlags {
  readonly journal: StateStore;
  readonly signal?: AbortSignal;
  readonly clock?: Clock;
  readonly onEvent?: EventSink<StepEvent>;
}

export interface WorkflowRun {
  readonly plan: readonly PlannedStep[];
  readonly outcomes: ReadonlyMap<string, StepOutcome>;
  /** The first failure (in the order they happened), if any. */
  readonly error?: unknown;
}

/** A step that could not finish because a step it follows failed (not a failure of its own). */
export class BlockedError extends HcexportError {
  readonly by: string;
  constructor(by: string) {
    super(`blocked: ${by} did not finish`);
    this.by = by;
  }
}

/** The short name of a step key (`export:train` → `export`). */
export const stepName = (key: string): string => key.split(":")[0]!;

/**
 * Runs a workflow against its journal. Each step starts when its `needs` are done, so independent
 * steps (the lanes) run concurrently; its result is journaled before any dependent starts. Steps
 * the plan replays return their recorded result without running; a failed step blocks its
 * dependents while independent steps carry on; the first failure is returned, not thrown, with
 * every step's outcome. An abort (SIGINT) stops everything; journaled work stays journaled.
 */
export async function runWorkflow(wf: Workflow, options: RunWorkflowOptions): Promise<WorkflowRun> {
  const clock = options.clock ?? systemClock;
  const emit = options.onEvent ?? (() => {});
  const store = options.journal;
  const plan = planWorkflow(wf, store.state.steps, options);
  const planned = new Map(plan.map((p) => [p.key, p]));
  const outcomes = new Map<string, StepOutcome>();
  const promises = new Map<string, Promise<StepOutcome>>();
  const failures: unknown[] = [];
  const now = () => new Date(clock.now()).toISOString();
  const dependents = (key: string) => wf.steps.filter((s) => s.options.needs?.some((n) => n.key === key) === true);

  const record = (key: string, change: (r: StepRecord | undefined) => StepRecord) =>
    store.update((s) => void (s.steps[key] = change(s.steps[key])));

  const execute = async (def: StepDef): Promise<StepOutcome> => {
    const o = def.options;
    const p = planned.get(def.key)!;
    const base = { key: def.key, step: stepName(def.key), ...(o.lane === undefined ? {} : { lane: o.lane }) };
    const needed = new Map<string, unknown>();
    for (const n of o.needs ?? []) {
      const got = await promises.get(n.key)!;
      if (got.status !== "done") {
        const by = got.status === "blocked" ? got.by : n.key;
        emit({ kind: "step.blocked", ...base, by });
        return { status: "blocked", by };
      }
      needed.set(n.key, got.result);
    }
    options.signal?.throwIfAborted();
    const rec = store.state.steps[def.key];
    let action = p.action;
    if (action === "skip" && o.stillValid !== undefined) {
      // A replayed result that a dependent will use must still hold (an operation expires).
      const used = dependents(def.key).some((d) => planned.get(d.key)!.action !== "skip");
      if (used && !(await o.stillValid(rec!.result))) action = "run";
    }
    if (action === "skip") {
      const result = rec!.result;
      emit({
        kind: "step.done",
        ...base,
        replayed: true,
        detail: `${o.summarize?.(result) ?? "done"} (in an earlier run)`,
      });
      return { status: "done", result, replayed: true };
    }
    const resumed = action === "resume";
    const startedAt = resumed && rec !== undefined ? rec.startedAt : now();
    emit({ kind: "step.start", ...base, action, detail: o.describe });
    if (o.idempotency !== "idempotent")
      await record(def.key, (r) => ({
        status: "started",
        ...(o.input === undefined ? {} : { input: o.input }),
        startedAt,
        attempts: (resumed ? (r?.attempts ?? 0) : 0) + 1,
        // A resumed step keeps what it noted (an export's POST in flight); a record without notes is older.
        ...(resumed
          ? r?.notes === undefined
            ? {}
            : { notes: r.notes }
          : o.idempotency === "at-most-once"
            ? { notes: {} }
            : {}),
      }));
    const controller = new AbortController();
    const signal =
      options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal]);
    const timer =
      o.timeoutMs === undefined
        ? undefined
        : clock.sleep(o.timeoutMs, controller.signal).then(
            () => controller.abort(new HcexportError(`step ${def.key} timed out after ${o.timeoutMs} ms`)),
            () => {},
          );
    const ctx = {
      key: def.key,
      signal,
      resumed,
      recheck: action === "recheck",
      startedAt,
      get: <T>(ref: StepRef<T>): T => {
        if (!needed.has(ref.key)) throw new Error(`step ${def.key}: ${ref.key} is not in its needs`);
        return needed.get(ref.key) as T;
      },
      settled: async <T>(ref: StepRef<T>): Promise<T> => {
        const got = await promises.get(ref.key);
        if (got === undefined) throw new Error(`step ${def.key}: ${ref.key} is not in the workflow`);
        if (got.status === "done") return got.result as T;
        throw new BlockedError(got.status === "blocked" ? got.by : ref.key);
      },
      journal: () => structuredClone(store.state.steps),
      note: async (notes: Record<string, unknown>) => {
        if (o.idempotency === "idempotent") throw new Error(`step ${def.key}: an idempotent step has no notes`);
        await record(def.key, (r) => ({ ...r!, notes: { ...r?.notes, ...notes } }));
      },
    };
    try {
      const attempt = () => def.run(ctx);
      const result =
        o.retry === undefined ? await attempt() : await withRetry(attempt, { policy: o.retry, clock, signal });
      const finishedAt = now();
      await record(def.key, (r) => ({
        status: "done",
        ...(o.input === undefined ? {} : { input: o.input }),
        startedAt: o.idempotency === "idempotent" ? (r?.startedAt ?? startedAt) : startedAt,
        finishedAt,
        attempts: (r?.attempts ?? 0) + (o.idempotency === "idempotent" ? 1 : 0),
        ...(result === undefined ? {} : { result: result as unknown }),
      }));
      emit({ kind: "step.done", ...base, replayed: false, detail: o.summarize?.(result) ?? "done" });
      return { status: "done", result, replayed: false };
    } catch (err) {
      if (err instanceof BlockedError) {
        emit({ kind: "step.blocked", ...base, by: err.by });
        return { status: "blocked", by: err.by };
      }
      if (options.signal?.aborted !== true && o.terminal?.(err) === true)
        await record(def.key, (r) => ({
          ...(r ?? { startedAt, attempts: 1 }),
          status: "failed",
          finishedAt: now(),
          error: err instanceof Error ? err.message : String(err),
        })).catch(() => {});
      emit({ kind: "step.failed", ...base, error: err instanceof Error ? err.message : String(err) });
      failures.push(err);
      return { status: "failed", error: err };
    } finally {
      controller.abort();
      await timer;
    }
  };

  for (const def of wf.steps) {
    const run = execute(def).then(
      (o) => o,
      (err: unknown): StepOutcome => {
        failures.push(err);
        return { status: "failed", error: err };
      },
    );
    promises.set(def.key, run);
    void run.then((o) => outcomes.set(def.key, o));
  }
  await Promise.all(promises.values());
  for (const def of wf.steps) outcomes.set(def.key, (await promises.get(def.key))!);
  return { plan, outcomes, ...(failures.length === 0 ? {} : { error: failures[0] }) };
}
