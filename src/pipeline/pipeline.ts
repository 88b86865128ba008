import type { Clock } from "../core/clock.ts";
import type { EventSink } from "../core/events.ts";
import type { FetchedAnnotations } from "../fhir/annotations.ts";
import type { BucketSpec } from "../gcp/storage-admin.ts";
import type { MirrorSummary } from "../mirror/mirror.ts";
import { runWorkflow, type StepEvent, type WorkflowRun } from "../workflow/engine.ts";
import { planWorkflow, type PlanFlags, type PlannedStep } from "../workflow/graph.ts";
import type { PollOptions } from "../workflow/poll-operation.ts";
import { MemoryStateStore, type RunState, type StateStore } from "../workflow/state.ts";
import type { BigQueryLaneEvent, RowsResult } from "./bigquery-lane.ts";
import type { OptionalLane } from "./lanes.ts";
import { siimWorkflow } from "./siim-workflow.ts";
import type { AnnotationsSpec, ExportLane, ExportResult, PipelinePorts, StepsEvent } from "./steps.ts";

export type { PipelinePorts } from "./steps.ts";

/** What to do: the resolved config of one run (DESIGN §3). */
export interface PipelineSpec {
  readonly bucket: BucketSpec;
  /** `service-N@gcp-sa-healthcare.iam.gserviceaccount.com` of the source project. */
  readonly serviceAgent: string;
  readonly grantIam: boolean;
  readonly exports: ReadonlyArray<ExportLane & { readonly dest: string }>;
  readonly annotations?: AnnotationsSpec;
  readonly concurrency: number;
  /** Delete destination-only files after the final mirror pass (config `mirror.delete`). */
  readonly delete?: boolean;
  /** The mirror follows its export (default); false: mirror after the operation ends. */
  readonly follow?: boolean;
  /** Optional lanes (BigQuery `bigqueryLane`, FHIR store `fhirExportLane`, …) added after the store lanes. */
  readonly lanes?: readonly OptionalLane[];
}

export type PipelineEvent = StepEvent | StepsEvent | BigQueryLaneEvent;

/** What the step functions report to the runner besides their journaled results. */
export interface RunHooks {
  readonly emit: EventSink<StepsEvent | BigQueryLaneEvent>;
  readonly poll?: Omit<PollOptions, "onEvent" | "signal">;
  readonly mirrored: (e: PipelineSpec["exports"][number], s: MirrorSummary) => void;
  readonly annotations: (a: FetchedAnnotations) => void;
}

export interface PipelineResult {
  readonly bucketCreated: boolean;
  readonly iamGranted: boolean;
  /** Operations this run started or resumed waiting for. */
  readonly operations: ReadonlyArray<{ readonly store: string; readonly name: string }>;
  readonly mirrors: ReadonlyArray<{ readonly prefix: string; readonly dest: string; readonly summary: MirrorSummary }>;
  readonly annotations?: FetchedAnnotations;
  /** The BigQuery lanes' tables and their row counts (`replayed`: counted by an earlier run). */
  readonly tables: ReadonlyArray<RowsResult & { readonly lane: string; readonly replayed: boolean }>;
  /** Every step of the graph: what this run did with it. */
  readonly steps: ReadonlyArray<{ readonly key: string; readonly lane?: string; readonly outcome: string }>;
}

export interface PipelineOptions {
  readonly onEvent?: EventSink<PipelineEvent>;
  readonly signal?: AbortSignal;
  readonly poll?: Omit<PollOptions, "onEvent" | "signal">;
  /** The journal; default in memory (nothing resumes). */
  readonly state?: StateStore;
  /** Redo finished steps (bucket, IAM, exports, annotations). */
  readonly force?: boolean;
  /** Start new exports even where an earlier run finished one (scheduled re-sync). */
  readonly freshExport?: boolean;
  readonly clock?: Clock;
}

const flagsOf = (o: { force?: boolean; freshExport?: boolean }): PlanFlags => ({
  force: o.force === true,
  redo: (key) => o.freshExport === true && key.startsWith("export:"),
});

/** What a run would do, step by step, from the config and the journal alone (pure). */
export function planRun(
  spec: PipelineSpec,
  state: RunState,
  flags: { force?: boolean; freshExport?: boolean } = {},
): PlannedStep[] {
  const noop = async (): Promise<never> => {
    throw new Error("planning does no I/O");
  };
  const ports: PipelinePorts = {
    buckets: { ensureBucket: noop, getPolicy: noop, setPolicy: noop },
    healthcare: { startExport: noop, getOperation: noop, listOperations: noop, cancelOperation: noop },
    source: { listPages: noop as never, open: noop },
    fetchAnnotations: noop,
  };
  const hooks: RunHooks = { emit: () => {}, mirrored: () => {}, annotations: () => {} };
  return planWorkflow(siimWorkflow(spec, ports, hooks), state.steps, flagsOf(flags));
}

/**
 * Runs the SIIM workflow (src/pipeline/siim-workflow.ts) on the step engine. Finished steps are
 * replayed from the journal, interrupted ones resumed; throws the first failure after every
 * independent step has finished.
 */
export async function runPipeline(
  spec: PipelineSpec,
  ports: PipelinePorts,
  options: PipelineOptions = {},
): Promise<PipelineResult> {
  const emit = options.onEvent ?? (() => {});
  const mirrors = new Map<string, { prefix: string; dest: string; summary: MirrorSummary }>();
  let annotations: FetchedAnnotations | undefined;
  const hooks: RunHooks = {
    emit,
    ...(options.poll === undefined ? {} : { poll: options.poll }),
    mirrored: (e, summary) => void mirrors.set(e.prefix, { prefix: e.prefix, dest: e.dest, summary }),
    annotations: (a) => void (annotations = a),
  };
  const run = await runWorkflow(siimWorkflow(spec, ports, hooks), {
    journal: options.state ?? new MemoryStateStore(),
    ...flagsOf(options),
    onEvent: emit,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  if (run.error !== undefined) throw run.error;
  return resultOf(spec, run, [...mirrors.values()], annotations);
}

function resultOf(
  spec: PipelineSpec,
  run: WorkflowRun,
  mirrors: PipelineResult["mirrors"],
  annotations: FetchedAnnotations | undefined,
): PipelineResult {
  const fresh = (key: string) => {
    const o = run.outcomes.get(key);
    return o?.status === "done" && !o.replayed ? o.result : undefined;
  };
  const rechecked = (key: string) => run.plan.find((p) => p.key === key)?.action === "recheck";
  const bucket = rechecked("bucket") ? undefined : (fresh("bucket") as { created?: boolean } | undefined);
  const iam = rechecked("iam") ? undefined : (fresh("iam") as { granted?: boolean } | undefined);
  const operations = run.plan.flatMap((p) => {
    if (!p.key.startsWith("export:")) return [];
    const lane = p.key.slice("export:".length);
    const wait = run.outcomes.get(`wait:${lane}`);
    const start = run.outcomes.get(p.key);
    if (wait?.status !== "done" || wait.replayed || start?.status !== "done") return [];
    const r = start.result as ExportResult;
    return [{ store: r.store ?? spec.exports.find((e) => e.prefix === lane)?.store ?? "", name: r.operation }];
  });
  const tables = run.plan.flatMap((p) => {
    const o = run.outcomes.get(p.key);
    if (!p.key.startsWith("rows:") || o?.status !== "done") return [];
    return [{ lane: p.lane ?? p.key.slice("rows:".length), ...(o.result as RowsResult), replayed: o.replayed }];
  });
  const order = new Map(run.plan.map((p, i) => [p.key, i]));
  const at = (prefix: string) => order.get(`mirror:${prefix}`) ?? 0;
  return {
    bucketCreated: bucket?.created === true,
    iamGranted: iam?.granted === true,
    operations,
    mirrors: [...mirrors].sort((a, b) => at(a.prefix) - at(b.prefix)),
    tables,
    ...(annotations === undefined ? {} : { annotations }),
    steps: run.plan.map((p) => {
      const o = run.outcomes.get(p.key);
      const outcome = o === undefined ? "not run" : o.status === "done" ? (o.replayed ? "replayed" : "done") : o.status;
      return { key: p.key, ...(p.lane === undefined ? {} : { lane: p.lane }), outcome };
    }),
  };
}
