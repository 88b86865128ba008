import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { HttpError, OperationFailedError, PermissionError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import type { BucketAdmin, BucketSpec } from "../gcp/storage-admin.ts";
import type { HealthcareApi } from "../gcp/healthcare.ts";
import type { FetchedAnnotations } from "../fhir/annotations.ts";
import { mirror, type MirrorEvent, type MirrorSummary } from "../mirror/mirror.ts";
import type { RemoteSource } from "../mirror/ports.ts";
import { EXPORT_ROLE, hasExportRole, memberOf, withMemberInRole } from "../workflow/iam-policy.ts";
import { countersOf, pollOperation, type OperationEvent, type PollOptions } from "../workflow/poll-operation.ts";
import { MemoryStateStore, type RunState, type StateStore } from "../workflow/state.ts";
import { startExportOnce, type StartExportEvent } from "./start-export.ts";
import type { Clock } from "../core/clock.ts";

/** What to do: the resolved config of one run (DESIGN §3). */
export interface PipelineSpec {
  readonly bucket: BucketSpec;
  /** `service-N@gcp-sa-healthcare.iam.gserviceaccount.com` of the source project. */
  readonly serviceAgent: string;
  readonly grantIam: boolean;
  readonly exports: ReadonlyArray<{ readonly store: string; readonly prefix: string; readonly dest: string }>;
  readonly annotations?: { readonly store: string; readonly documentReference: string; readonly dest: string };
  readonly concurrency: number;
}

/** The outside world, as ports (fakes in unit tests; Google or the local cloud in real runs). */
export interface PipelinePorts {
  readonly buckets: BucketAdmin;
  readonly healthcare: HealthcareApi;
  readonly source: RemoteSource;
  readonly fetchAnnotations?: (a: NonNullable<PipelineSpec["annotations"]>) => Promise<FetchedAnnotations>;
}

export type StepName = "bucket" | "iam" | "export" | "wait" | "mirror" | "annotations";

export type PipelineEvent =
  | { readonly kind: "step.start"; readonly step: StepName; readonly detail: string }
  | { readonly kind: "step.done"; readonly step: StepName; readonly detail: string }
  | OperationEvent
  | StartExportEvent
  | MirrorEvent;

export interface PipelineResult {
  readonly bucketCreated: boolean;
  readonly iamGranted: boolean;
  readonly operations: ReadonlyArray<{ readonly store: string; readonly name: string }>;
  readonly mirrors: ReadonlyArray<{ readonly prefix: string; readonly dest: string; readonly summary: MirrorSummary }>;
  readonly annotations?: FetchedAnnotations;
}

export interface PipelineOptions {
  readonly onEvent?: EventSink<PipelineEvent>;
  readonly signal?: AbortSignal;
  readonly poll?: Omit<PollOptions, "onEvent" | "signal">;
  /** Checkpoints; default in memory (nothing resumes). */
  readonly state?: StateStore;
  /** Redo finished steps (bucket, IAM, exports, annotations). */
  readonly force?: boolean;
  /** Start new exports even where an earlier run finished one (scheduled re-sync). */
  readonly freshExport?: boolean;
  readonly now?: () => Date;
  /** For the export start's retry delays (tests pass a fake). */
  readonly clock?: Clock;
}

/** What a run would do, step by step, given the config and the saved state (pure). */
export interface PlannedStep {
  readonly step: StepName;
  readonly action: "run" | "skip" | "resume";
  readonly detail: string;
}

export function planRun(
  spec: PipelineSpec,
  state: RunState,
  flags: { force?: boolean; freshExport?: boolean } = {},
): PlannedStep[] {
  const force = flags.force === true;
  const b = spec.bucket.name;
  const steps: PlannedStep[] = [];
  steps.push(
    state.bucket?.done && state.bucket.name === b && !force
      ? { step: "bucket", action: "skip", detail: `gs://${b} ensured at ${state.bucket.at}` }
      : {
          step: "bucket",
          action: "run",
          detail: `ensure gs://${b} (${spec.bucket.location ?? "US"}, ${spec.bucket.storageClass ?? "STANDARD"})`,
        },
  );
  const member = memberOf(spec.serviceAgent);
  steps.push(
    state.iam?.done && state.iam.member === member && !force
      ? { step: "iam", action: "skip", detail: `${spec.serviceAgent} checked at ${state.iam.at}` }
      : {
          step: "iam",
          action: "run",
          detail: `check ${spec.serviceAgent} has ${EXPORT_ROLE}${spec.grantIam ? " (grant if missing)" : " (stop with exit 3 if missing)"}`,
        },
  );
  for (const e of spec.exports) {
    const prev = state.exports[e.prefix];
    const uri = `gs://${b}/${e.prefix}`;
    if (prev !== undefined && prev.uriPrefix === uri && prev.status === "running" && prev.operation !== undefined)
      steps.push({ step: "wait", action: "resume", detail: `resume polling ${prev.operation}` });
    else if (
      prev !== undefined &&
      prev.uriPrefix === uri &&
      prev.status === "done" &&
      !force &&
      flags.freshExport !== true
    )
      steps.push({
        step: "export",
        action: "skip",
        detail: `${e.store} exported to ${uri} at ${prev.finishedAt ?? "?"}`,
      });
    else
      steps.push({
        step: "export",
        action: "run",
        detail: `${e.store} → ${uri}${prev?.status === "starting" ? " (an earlier run was interrupted while starting it: an export it started will be adopted, not repeated)" : ""}`,
      });
  }
  for (const e of spec.exports)
    steps.push({ step: "mirror", action: "run", detail: `gs://${b}/${e.prefix} → ${e.dest} (incremental)` });
  if (spec.annotations !== undefined) {
    steps.push(
      state.annotations !== undefined && !force
        ? {
            step: "annotations",
            action: "skip",
            detail: `${state.annotations.path} fetched at ${state.annotations.at}`,
          }
        : {
            step: "annotations",
            action: "run",
            detail: `DocumentReference/${spec.annotations.documentReference} → ${spec.annotations.dest}`,
          },
    );
  }
  return steps;
}

/**
 * The export-and-mirror workflow: ensure the bucket → check (and, when allowed, grant) the
 * service agent's role → start every export, saving each operation name before polling → wait
 * for each → mirror each prefix → fetch the annotations. Finished steps recorded in the state
 * are skipped (unless forced); a rerun after a crash resumes polling instead of exporting again.
 */
export async function runPipeline(
  spec: PipelineSpec,
  ports: PipelinePorts,
  options: PipelineOptions = {},
): Promise<PipelineResult> {
  const emit = options.onEvent ?? (() => {});
  const signalOpt = options.signal === undefined ? {} : { signal: options.signal };
  const store = options.state ?? new MemoryStateStore();
  const now = () => (options.now ?? (() => new Date()))().toISOString();
  const plan = planRun(spec, store.state, options);
  const planned = (step: StepName, match?: (p: PlannedStep) => boolean) =>
    plan.find((p) => p.step === step && (match?.(p) ?? true));
  const b = spec.bucket.name;

  let created = false;
  const bucketPlan = planned("bucket")!;
  if (bucketPlan.action === "skip")
    emit({ kind: "step.done", step: "bucket", detail: `gs://${b}: done in an earlier run` });
  else {
    emit({ kind: "step.start", step: "bucket", detail: `gs://${b}` });
    created = (await ports.buckets.ensureBucket(spec.bucket)).created;
    await store.update((s) => void (s.bucket = { name: b, done: true, at: now(), created }));
    emit({ kind: "step.done", step: "bucket", detail: created ? `created gs://${b}` : `gs://${b} exists (ours)` });
  }

  let iamGranted = false;
  if (planned("iam")!.action === "skip")
    emit({ kind: "step.done", step: "iam", detail: `${spec.serviceAgent}: checked in an earlier run` });
  else {
    emit({ kind: "step.start", step: "iam", detail: `${spec.serviceAgent} → ${EXPORT_ROLE}` });
    iamGranted = await ensureExportRole(ports.buckets, b, spec.serviceAgent, spec.grantIam);
    await store.update(
      (s) => void (s.iam = { member: memberOf(spec.serviceAgent), done: true, at: now(), granted: iamGranted }),
    );
    emit({
      kind: "step.done",
      step: "iam",
      detail: iamGranted ? `granted ${EXPORT_ROLE} to ${spec.serviceAgent}` : "binding already present",
    });
  }

  const operations: Array<{ store: string; name: string; prefix: string }> = [];
  for (const e of spec.exports) {
    const uri = `gs://${b}/${e.prefix}`;
    const prev = store.state.exports[e.prefix];
    if (
      prev?.uriPrefix === uri &&
      prev.status === "running" &&
      prev.operation !== undefined &&
      (await exists(ports.healthcare, prev.operation))
    ) {
      emit({
        kind: "step.done",
        step: "export",
        detail: `resuming ${prev.operation} (started ${prev.startedAt}); no new export`,
      });
      operations.push({ store: e.store, name: prev.operation, prefix: e.prefix });
      continue;
    }
    if (prev?.uriPrefix === uri && prev.status === "done" && options.force !== true && options.freshExport !== true) {
      emit({
        kind: "step.done",
        step: "export",
        detail: `${e.prefix}: exported in an earlier run (${prev.operation ?? "?"}); no new export`,
      });
      continue;
    }
    emit({ kind: "step.start", step: "export", detail: `${e.store} → ${uri}` });
    // A `starting` record means an earlier run may have reached the server: look before posting.
    const maybeStarted = prev?.uriPrefix === uri && prev.status === "starting";
    const since = maybeStarted ? prev.startedAt : now();
    if (!maybeStarted)
      await store.update(
        (s) => void (s.exports[e.prefix] = { store: e.store, uriPrefix: uri, status: "starting", startedAt: since }),
      );
    const known = new Set(
      Object.values(store.state.exports).flatMap((x) => (x.operation === undefined ? [] : [x.operation])),
    );
    const name = await startExportOnce(ports.healthcare, e.store, uri, {
      since,
      known,
      maybeStarted,
      onEvent: emit,
      ...signalOpt,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    await store.update((s) => Object.assign(s.exports[e.prefix]!, { status: "running", operation: name }));
    operations.push({ store: e.store, name, prefix: e.prefix });
    emit({ kind: "step.done", step: "export", detail: name });
  }
  for (const op of operations) {
    emit({ kind: "step.start", step: "wait", detail: op.name });
    try {
      const done = await pollOperation((n) => ports.healthcare.getOperation(n), op.name, {
        ...options.poll,
        onEvent: emit,
        ...signalOpt,
      });
      const c = countersOf(done);
      await store.update((s) =>
        Object.assign(s.exports[op.prefix]!, {
          status: "done",
          finishedAt: now(),
          counters: { success: c.success, failure: c.failure },
        }),
      );
    } catch (err) {
      if (err instanceof OperationFailedError) {
        await store.update((s) =>
          Object.assign(s.exports[op.prefix]!, { status: "failed", finishedAt: now(), error: err.message }),
        );
      }
      throw err;
    }
    emit({ kind: "step.done", step: "wait", detail: op.name });
  }

  const mirrors: Array<{ prefix: string; dest: string; summary: MirrorSummary }> = [];
  for (const e of spec.exports) {
    emit({ kind: "step.start", step: "mirror", detail: `gs://${b}/${e.prefix} → ${e.dest}` });
    const summary = await mirror({
      source: ports.source,
      bucket: b,
      prefix: e.prefix,
      dest: path.resolve(e.dest),
      concurrency: spec.concurrency,
      onEvent: emit,
      ...signalOpt,
    });
    mirrors.push({ prefix: e.prefix, dest: e.dest, summary });
    const { failures: _f, ...counts } = summary;
    await store.update((s) => void (s.mirrors[e.prefix] = { at: now(), ...counts }));
    emit({
      kind: "step.done",
      step: "mirror",
      detail: `${summary.downloaded} downloaded, ${summary.skipped} up to date, ${summary.failed + summary.refused} failed or refused`,
    });
  }

  let annotations: FetchedAnnotations | undefined;
  if (spec.annotations !== undefined && ports.fetchAnnotations !== undefined) {
    if (planned("annotations")!.action === "skip")
      emit({
        kind: "step.done",
        step: "annotations",
        detail: `${store.state.annotations!.path}: fetched in an earlier run`,
      });
    else {
      emit({
        kind: "step.start",
        step: "annotations",
        detail: `${spec.annotations.store} DocumentReference/${spec.annotations.documentReference}`,
      });
      const got = await ports.fetchAnnotations(spec.annotations);
      annotations = got;
      await store.update(
        (s) =>
          void (s.annotations = {
            at: now(),
            path: got.path,
            bytes: got.bytes,
            images: got.summary.images,
            imagesWithPneumothorax: got.summary.imagesWithPneumothorax,
            masks: got.summary.masks,
          }),
      );
      emit({
        kind: "step.done",
        step: "annotations",
        detail: `${got.path}: ${got.summary.images} images, ${got.summary.imagesWithPneumothorax} with pneumothorax, ${got.summary.masks} masks`,
      });
    }
  }
  return {
    bucketCreated: created,
    iamGranted,
    operations: operations.map(({ store: st, name }) => ({ store: st, name })),
    mirrors,
    ...(annotations === undefined ? {} : { annotations }),
  };
}

/** The grant's read-modify-write is retried on 412 this often, with this backoff (~15 s at most in all). */
const GRANT_ATTEMPTS = 30;
const GRANT_BACKOFF: BackoffPolicy = { initialMs: 20, maxMs: 1000, multiplier: 1.5, jitter: "full" };

/**
 * Makes sure the service agent holds the export role on the bucket: a read-modify-write with the
 * policy's etag, retried on 412 (a concurrent edit), that never drops or rewrites other bindings.
 * Without `grant`, a missing binding is a PermissionError (exit 3) saying how to fix it.
 */
export async function ensureExportRole(
  buckets: BucketAdmin,
  bucket: string,
  serviceAgent: string,
  grant: boolean,
): Promise<boolean> {
  const member = memberOf(serviceAgent);
  for (let attempt = 1; ; attempt++) {
    const policy = await buckets.getPolicy(bucket);
    if (hasExportRole(policy, member)) return false;
    if (!grant) {
      throw new PermissionError(
        `gs://${bucket}: ${serviceAgent} lacks ${EXPORT_ROLE}, so the export would fail with PERMISSION_DENIED (objectCreator is not enough: exports overwrite objects)`,
        {
          hint: `run 'hcexport iam grant gs://${bucket} --service-agent ${serviceAgent}' or pass --grant-iam`,
        },
      );
    }
    const { policy: next } = withMemberInRole(policy, EXPORT_ROLE, member);
    try {
      await buckets.setPolicy(bucket, next);
      return true;
    } catch (err) {
      if ((err as { status?: number }).status !== 412 || attempt >= GRANT_ATTEMPTS) throw err;
      // Someone else changed the policy meanwhile: back off (jittered) so a busy policy is not a failure.
      await delay(backoffDelay(attempt, GRANT_BACKOFF));
    }
  }
}

/** Whether a saved operation can still be polled (records expire ~30 days after they finish). */
async function exists(api: HealthcareApi, name: string): Promise<boolean> {
  try {
    await api.getOperation(name);
    return true;
  } catch (err) {
    for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
      if (e instanceof HttpError && e.status === 404) return false;
    }
    throw err;
  }
}
