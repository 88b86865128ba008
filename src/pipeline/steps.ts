import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { HttpError, OperationFailedError, PermissionError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import type { FetchedAnnotations } from "../fhir/annotations.ts";
import type { HealthcareApi } from "../gcp/healthcare.ts";
import type { BucketAdmin, BucketSpec } from "../gcp/storage-admin.ts";
import type { MirrorEvent, MirrorSummary } from "../mirror/mirror.ts";
import type { RemoteSource } from "../mirror/ports.ts";
import type { StepContext } from "../workflow/graph.ts";
import { EXPORT_ROLE, hasExportRole, memberOf, withMemberInRole } from "../workflow/iam-policy.ts";
import { countersOf, pollOperation, type OperationEvent, type PollOptions } from "../workflow/poll-operation.ts";
import { followMirror } from "./follow-mirror.ts";
import { startExportOnce, type StartExportEvent } from "./start-export.ts";

/** The outside world, as ports (fakes in unit tests; Google or the local cloud in real runs). */
export interface PipelinePorts {
  readonly buckets: BucketAdmin;
  readonly healthcare: HealthcareApi;
  readonly source: RemoteSource;
  readonly fetchAnnotations?: (a: AnnotationsSpec) => Promise<FetchedAnnotations>;
}

export interface AnnotationsSpec {
  readonly store: string;
  readonly documentReference: string;
  readonly dest: string;
}

export type WaitEvent = { readonly kind: "wait.resume"; readonly operation: string; readonly startedAt: string };

export type StepsEvent = OperationEvent | StartExportEvent | MirrorEvent | WaitEvent;

export interface BucketResult {
  readonly name: string;
  readonly created: boolean;
}

/** Bucket step: create it if missing; on a re-verification, a read-only look first (recreated if gone). */
export async function bucketStep(ctx: StepContext, buckets: BucketAdmin, spec: BucketSpec): Promise<BucketResult> {
  if (ctx.recheck && buckets.bucketExists !== undefined && (await buckets.bucketExists(spec.name)))
    return (ctx.journal()[ctx.key]?.result as BucketResult | undefined) ?? { name: spec.name, created: false };
  return { name: spec.name, created: (await buckets.ensureBucket(spec)).created };
}

export interface IamResult {
  readonly member: string;
  readonly granted: boolean;
}

/** IAM step: the service agent holds the export role (granted when allowed); read-only when it does. */
export async function iamStep(
  ctx: StepContext,
  buckets: BucketAdmin,
  bucket: string,
  serviceAgent: string,
  grant: boolean,
): Promise<IamResult> {
  const granted = await ensureExportRole(buckets, bucket, serviceAgent, grant);
  const before = ctx.journal()[ctx.key]?.result as IamResult | undefined;
  // Verified, nothing changed: keep what the run that made the binding recorded.
  if (!granted && ctx.recheck && before !== undefined) return before;
  return { member: memberOf(serviceAgent), granted };
}

export interface ExportResult {
  readonly operation: string;
  readonly uriPrefix: string;
}

/**
 * Per Healthcare client (one per run): its export starts go one at a time, and every operation one
 * of them started or adopted is claimed. An export operation does not name its store, so two lanes
 * resuming at once in one dataset could otherwise both adopt the same operation (measured: the test
 * lane adopted the train lane's export and mirrored an empty prefix).
 */
const exportStarts = new WeakMap<HealthcareApi, { tail: Promise<unknown>; claimed: Set<string> }>();

/** Export step (at-most-once): a resumed step adopts the export an interrupted run may have started. */
export async function exportStep(
  ctx: StepContext,
  api: HealthcareApi,
  store: string,
  uriPrefix: string,
  emit: EventSink<StartExportEvent>,
): Promise<ExportResult> {
  let gate = exportStarts.get(api);
  if (gate === undefined) exportStarts.set(api, (gate = { tail: Promise.resolve(), claimed: new Set() }));
  const { claimed } = gate;
  const start = gate.tail.then(async () => {
    const known = new Set([
      ...claimed,
      ...Object.values(ctx.journal()).flatMap((r) => {
        const op = (r.result as { operation?: unknown } | undefined)?.operation;
        return typeof op === "string" ? [op] : [];
      }),
    ]);
    const name = await startExportOnce(api, store, uriPrefix, {
      since: ctx.startedAt,
      known,
      maybeStarted: ctx.resumed,
      onEvent: emit,
      signal: ctx.signal,
    });
    claimed.add(name);
    return name;
  });
  gate.tail = start.catch(() => undefined);
  return { operation: await start, uriPrefix };
}

export interface WaitResult {
  readonly success: number;
  readonly failure: number;
}

/** Wait step (resumable): polls the operation to its end; a failed export is terminal (exit 4). */
export async function waitStep(
  ctx: StepContext,
  api: HealthcareApi,
  operation: string,
  poll: Omit<PollOptions, "onEvent" | "signal"> | undefined,
  emit: EventSink<OperationEvent | WaitEvent>,
): Promise<WaitResult> {
  if (ctx.resumed) emit({ kind: "wait.resume", operation, startedAt: ctx.startedAt });
  const done = await pollOperation((n) => api.getOperation(n), operation, {
    ...poll,
    onEvent: emit,
    signal: ctx.signal,
  });
  const c = countersOf(done);
  return { success: c.success, failure: c.failure };
}

export type MirrorCounts = Omit<MirrorSummary, "failures">;

/** Mirror step (resumable, every run): follows the export (until `until` settles), then reconciles. */
export async function mirrorStep(
  ctx: StepContext,
  source: RemoteSource,
  spec: { bucket: BucketSpec; concurrency: number; delete?: boolean },
  lane: { prefix: string; dest: string },
  o: { follow: boolean; until: Promise<unknown>; emit: EventSink<MirrorEvent>; keep: (s: MirrorSummary) => void },
): Promise<MirrorCounts> {
  const summary = await followMirror({
    follow: o.follow,
    until: o.until,
    mirror: {
      source,
      bucket: spec.bucket.name,
      prefix: lane.prefix,
      dest: path.resolve(lane.dest),
      concurrency: spec.concurrency,
      delete: spec.delete === true,
      onEvent: o.emit,
      signal: ctx.signal,
    },
  });
  o.keep(summary);
  const { failures: _f, ...counts } = summary;
  return counts;
}

export interface AnnotationsResult {
  readonly path: string;
  readonly bytes: number;
  readonly images: number;
  readonly imagesWithPneumothorax: number;
  readonly masks: number;
}

/** Annotations step (idempotent): the DocumentReference's CSV onto disk. */
export async function annotationsStep(
  fetch: NonNullable<PipelinePorts["fetchAnnotations"]>,
  a: AnnotationsSpec,
  keep: (got: FetchedAnnotations) => void,
): Promise<AnnotationsResult> {
  const got = await fetch(a);
  keep(got);
  return { path: got.path, bytes: got.bytes, ...got.summary };
}

/** One line per recorded result, for progress, `plan` and `status`. */
export const summaries = {
  bucket: (b: string) => (r: BucketResult) => (r.created ? `created gs://${b}` : `gs://${b} exists (ours)`),
  iam: (agent: string) => (r: IamResult) => (r.granted ? `granted ${EXPORT_ROLE} to ${agent}` : "binding present"),
  annotations: (r: AnnotationsResult) =>
    `${r.path}: ${r.images} images, ${r.imagesWithPneumothorax} with pneumothorax, ${r.masks} masks`,
  export: (r: ExportResult) => r.operation,
  wait: (r: WaitResult) => `${r.success} exported, ${r.failure} failed`,
  mirror: (r: MirrorCounts) =>
    `${r.downloaded} downloaded, ${r.skipped} up to date, ${r.failed + r.refused} failed or refused`,
};

/** The mechanical options of each kind of step (summaries, validity, terminal errors): data the workflow spreads in. */
export const extras = {
  bucket: (b: string) => ({ summarize: summaries.bucket(b) }),
  iam: (agent: string) => ({ summarize: summaries.iam(agent) }),
  annotations: { summarize: summaries.annotations },
  export: (api: HealthcareApi) => ({
    summarize: summaries.export,
    // A recorded operation is resumed only while it can still be polled (records expire after ~30 days).
    stillValid: (r: ExportResult) => operationExists(api, r.operation),
  }),
  wait: { summarize: summaries.wait, terminal: (err: unknown) => err instanceof OperationFailedError },
  mirror: { summarize: summaries.mirror },
};

/** Whether a recorded operation can still be polled (records expire ~30 days after they finish). */
export async function operationExists(api: HealthcareApi, name: string): Promise<boolean> {
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
          hint: `run 'hcexport iam grant gs://${bucket} --service-agent ${serviceAgent}' or pass --grant-iam (the binding is checked again on every run that starts an export)`,
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
