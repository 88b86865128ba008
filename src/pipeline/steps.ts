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

/** Export step (at-most-once): a resumed step adopts the export an interrupted run may have started. */
export async function exportStep(
  ctx: StepContext,
  api: HealthcareApi,
  store: string,
  uriPrefix: string,
  emit: EventSink<StartExportEvent>,
): Promise<ExportResult> {
  const known = new Set(
    Object.values(ctx.journal()).flatMap((r) => {
      const op = (r.result as { operation?: unknown } | undefined)?.operation;
      return typeof op === "string" ? [op] : [];
    }),
  );
  const operation = await startExportOnce(api, store, uriPrefix, {
    since: ctx.startedAt,
    known,
    maybeStarted: ctx.resumed,
    onEvent: emit,
  });
  return { operation, uriPrefix };
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
  poll: Omit<PollOptions, "onEvent" | "signal">,
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

/** Mirror step (resumable, every run): follows the export, then reconciles; the summary goes to `keep`. */
export async function mirrorStep(
  ctx: StepContext,
  o: {
    source: RemoteSource;
    bucket: string;
    prefix: string;
    dest: string;
    concurrency: number;
    delete: boolean;
    follow: boolean;
    until: Promise<unknown>;
    emit: EventSink<MirrorEvent>;
  },
  keep: (s: MirrorSummary) => void,
): Promise<MirrorCounts> {
  const summary = await followMirror({
    follow: o.follow,
    until: o.until,
    mirror: {
      source: o.source,
      bucket: o.bucket,
      prefix: o.prefix,
      dest: path.resolve(o.dest),
      concurrency: o.concurrency,
      delete: o.delete,
      onEvent: o.emit,
      signal: ctx.signal,
    },
  });
  keep(summary);
  const { failures: _f, ...counts } = summary;
  return counts;
}

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

/** A failed export operation ends its wait for good: the rerun starts a new export. */
export const isTerminal = (err: unknown): boolean => err instanceof OperationFailedError;

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
