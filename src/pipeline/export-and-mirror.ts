import path from "node:path";
import { PermissionError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import type { BucketAdmin, BucketSpec } from "../gcp/storage-admin.ts";
import type { HealthcareApi } from "../gcp/healthcare.ts";
import type { FetchedAnnotations } from "../fhir/annotations.ts";
import { mirror, type MirrorEvent, type MirrorSummary } from "../mirror/mirror.ts";
import type { RemoteSource } from "../mirror/ports.ts";
import { EXPORT_ROLE, hasExportRole, memberOf, withMemberInRole } from "../workflow/iam-policy.ts";
import { pollOperation, type OperationEvent, type PollOptions } from "../workflow/poll-operation.ts";

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
}

/**
 * The export-and-mirror workflow: ensure the bucket → check (and, when allowed, grant) the
 * service agent's role → start every export → wait for each → mirror each prefix → fetch the
 * annotations. Each step emits start/done events.
 */
export async function runPipeline(spec: PipelineSpec, ports: PipelinePorts, options: PipelineOptions = {}): Promise<PipelineResult> {
  const emit = options.onEvent ?? (() => {});
  const signalOpt = options.signal === undefined ? {} : { signal: options.signal };
  const b = spec.bucket.name;

  emit({ kind: "step.start", step: "bucket", detail: `gs://${b}` });
  const { created } = await ports.buckets.ensureBucket(spec.bucket);
  emit({ kind: "step.done", step: "bucket", detail: created ? `created gs://${b}` : `gs://${b} exists (ours)` });

  emit({ kind: "step.start", step: "iam", detail: `${spec.serviceAgent} → ${EXPORT_ROLE}` });
  const iamGranted = await ensureExportRole(ports.buckets, b, spec.serviceAgent, spec.grantIam);
  emit({ kind: "step.done", step: "iam", detail: iamGranted ? `granted ${EXPORT_ROLE} to ${spec.serviceAgent}` : "binding already present" });

  const operations: Array<{ store: string; name: string }> = [];
  for (const e of spec.exports) {
    const uri = `gs://${b}/${e.prefix}`;
    emit({ kind: "step.start", step: "export", detail: `${e.store} → ${uri}` });
    const name = await ports.healthcare.startExport(e.store, uri);
    operations.push({ store: e.store, name });
    emit({ kind: "step.done", step: "export", detail: name });
  }
  for (const op of operations) {
    emit({ kind: "step.start", step: "wait", detail: op.name });
    await pollOperation((n) => ports.healthcare.getOperation(n), op.name, { ...options.poll, onEvent: emit, ...signalOpt });
    emit({ kind: "step.done", step: "wait", detail: op.name });
  }

  const mirrors: Array<{ prefix: string; dest: string; summary: MirrorSummary }> = [];
  for (const e of spec.exports) {
    emit({ kind: "step.start", step: "mirror", detail: `gs://${b}/${e.prefix} → ${e.dest}` });
    const summary = await mirror({ source: ports.source, bucket: b, prefix: e.prefix, dest: path.resolve(e.dest), concurrency: spec.concurrency, onEvent: emit, ...signalOpt });
    mirrors.push({ prefix: e.prefix, dest: e.dest, summary });
    emit({ kind: "step.done", step: "mirror", detail: `${summary.downloaded} downloaded, ${summary.skipped} up to date, ${summary.failed + summary.refused} failed or refused` });
  }

  let annotations: FetchedAnnotations | undefined;
  if (spec.annotations !== undefined && ports.fetchAnnotations !== undefined) {
    emit({ kind: "step.start", step: "annotations", detail: `${spec.annotations.store} DocumentReference/${spec.annotations.documentReference}` });
    annotations = await ports.fetchAnnotations(spec.annotations);
    emit({ kind: "step.done", step: "annotations", detail: `${annotations.path}: ${annotations.summary.images} images, ${annotations.summary.imagesWithPneumothorax} with pneumothorax, ${annotations.summary.masks} masks` });
  }
  return { bucketCreated: created, iamGranted, operations, mirrors, ...(annotations === undefined ? {} : { annotations }) };
}

/**
 * Makes sure the service agent holds the export role on the bucket: a read-modify-write with the
 * policy's etag, retried on 412 (a concurrent edit), that never drops or rewrites other bindings.
 * Without `grant`, a missing binding is a PermissionError (exit 3) saying how to fix it.
 */
export async function ensureExportRole(buckets: BucketAdmin, bucket: string, serviceAgent: string, grant: boolean): Promise<boolean> {
  const member = memberOf(serviceAgent);
  for (let attempt = 1; ; attempt++) {
    const policy = await buckets.getPolicy(bucket);
    if (hasExportRole(policy, member)) return false;
    if (!grant) {
      throw new PermissionError(`gs://${bucket}: ${serviceAgent} lacks ${EXPORT_ROLE}, so the export would fail with PERMISSION_DENIED`, {
        hint: `run 'hcexport iam grant gs://${bucket} --service-agent ${serviceAgent}' or pass --grant-iam`,
      });
    }
    const { policy: next } = withMemberInRole(policy, EXPORT_ROLE, member);
    try {
      await buckets.setPolicy(bucket, next);
      return true;
    } catch (err) {
      if ((err as { status?: number }).status === 412 && attempt < 10) continue;
      throw err;
    }
  }
}
