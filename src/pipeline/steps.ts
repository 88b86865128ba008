import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { HttpError, OperationFailedError, PermissionError, UsageError } from "../core/errors.ts";
import { parseGsUri } from "../core/resource-names.ts";
import { filterDigest, filterFileContent, filterObjectName } from "../gcp/export-options.ts";
import type { EventSink } from "../core/events.ts";
import type { FetchedAnnotations } from "../fhir/annotations.ts";
import type { ExportOptions, HealthcareApi } from "../gcp/healthcare.ts";
import type { BigQueryAdmin } from "../gcp/bigquery.ts";
import type { BucketAdmin, BucketSpec } from "../gcp/storage-admin.ts";
import type { MirrorEvent, MirrorSummary } from "../mirror/mirror.ts";
import type { RemoteSource } from "../mirror/ports.ts";
import type { StepContext, StepRef } from "../workflow/graph.ts";
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
  /** BigQuery and project IAM, for the BigQuery lanes (`exports[i].bigquery`). */
  readonly bigquery?: BigQueryAdmin;
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
  /** `gs://B/PREFIX`, or `bq://P.D.T` for a BigQuery lane. */
  readonly uriPrefix: string;
  /** The store exported (absent in records of hcexport ≤ 0.2). */
  readonly store?: string;
  /** `gcsDestination.mimeType` sent (absent: the instances as stored). */
  readonly mimeType?: string;
  /** The filter file the export read (`filterConfig.resourcePathsGcsUri`), and how many paths it lists. */
  readonly filter?: { readonly uri: string; readonly paths: number };
}

/** A store lane's export options (config `exports[i]`). */
export interface ExportLane {
  readonly store: string;
  readonly prefix: string;
  readonly mimeType?: string;
  /** `/studies/UID[/series/UID]` paths: only these are exported (v1beta1 `filterConfig`). */
  readonly filter?: readonly string[];
}

/**
 * Per Healthcare client (one per run): its export starts go one at a time, and every operation one
 * of them started or adopted is claimed. An export operation does not name its store, so two lanes
 * resuming at once in one dataset could otherwise both adopt the same operation (measured: the test
 * lane adopted the train lane's export and mirrored an empty prefix).
 */
const exportStarts = new WeakMap<HealthcareApi, { tail: Promise<unknown>; claimed: Set<string> }>();

/** Operation names the journal accounts for: recorded results and the notes of started exports. */
function journaledOperations(journal: ReturnType<StepContext["journal"]>): string[] {
  return Object.values(journal).flatMap((r) =>
    [(r.result as { operation?: unknown } | undefined)?.operation, r.notes?.["operation"]].filter(
      (op): op is string => typeof op === "string",
    ),
  );
}

/**
 * Export step (at-most-once), for every kind of export lane (DICOM → gs://, DICOM → bq://, FHIR →
 * gs://). Inside the per-client gate it notes `posting` in the journal before the POST and the
 * `operation` right after it, so at any moment at most one lane can have an export on the server
 * that the journal does not name. A resumed step therefore adopts only if *it* was posting (a DICOM
 * export to Cloud Storage and one to BigQuery look alike on the server: same method, no
 * destination), reuses the operation it noted, and otherwise starts its export without looking.
 */
export async function exportStep(
  ctx: StepContext,
  api: HealthcareApi,
  store: string,
  destination: string,
  emit: EventSink<StartExportEvent>,
  exportOptions?: ExportOptions,
): Promise<ExportResult> {
  let gate = exportStarts.get(api);
  if (gate === undefined) exportStarts.set(api, (gate = { tail: Promise.resolve(), claimed: new Set() }));
  const { claimed } = gate;
  const start = gate.tail.then(async () => {
    const journal = ctx.journal();
    const notes = journal[ctx.key]?.notes;
    const noted = notes?.["operation"];
    if (ctx.resumed && typeof noted === "string" && !claimed.has(noted)) {
      claimed.add(noted);
      return noted;
    }
    const posting = notes?.["posting"];
    // A record without notes comes from a version that did not note its POST: it may have posted.
    const maybeStarted = ctx.resumed && (notes === undefined || typeof posting === "string");
    const since = maybeStarted && typeof posting === "string" ? posting : ctx.startedAt;
    await ctx.note({ posting: new Date().toISOString() });
    const name = await startExportOnce(api, store, destination, {
      since,
      known: new Set([...claimed, ...journaledOperations(journal)]),
      maybeStarted,
      ...(exportOptions === undefined ? {} : { exportOptions }),
      onEvent: emit,
      signal: ctx.signal,
    });
    claimed.add(name);
    await ctx.note({ operation: name });
    return name;
  });
  gate.tail = start.catch(() => undefined);
  return { operation: await start, uriPrefix: destination, store };
}

/**
 * A store lane's export to Cloud Storage (at-most-once, through `exportStep`'s gate) with its
 * options: a filtered lane first makes sure its filter file is in the bucket (content-addressed,
 * so redoing it on a rerun is harmless), then the start sends the mimeType and the filter's URI.
 */
export async function storeExportStep(
  ctx: StepContext,
  ports: Pick<PipelinePorts, "healthcare" | "buckets">,
  lane: ExportLane,
  uriPrefix: string,
  emit: EventSink<StartExportEvent>,
): Promise<ExportResult> {
  const filter = lane.filter === undefined ? undefined : await ensureFilter(ports.buckets, lane, uriPrefix, emit);
  const options: ExportOptions = {
    ...(lane.mimeType === undefined ? {} : { mimeType: lane.mimeType }),
    ...(filter === undefined ? {} : { filterUri: filter.uri }),
  };
  const started = await exportStep(ctx, ports.healthcare, lane.store, uriPrefix, emit, options);
  return {
    ...started,
    ...(lane.mimeType === undefined ? {} : { mimeType: lane.mimeType }),
    ...(filter === undefined ? {} : { filter }),
  };
}

/**
 * What a lane's export acts on, for `plan` and the journal: the store, the destination and the
 * options (`as MIME`, `filter N paths sha256:…`), so a changed option starts a new export. Pure.
 */
export function exportInput(lane: ExportLane, uriPrefix: string): string {
  const mime = lane.mimeType === undefined ? "" : ` as ${lane.mimeType}`;
  const content = lane.filter === undefined ? undefined : filterFileContent(lane.filter);
  const filter =
    content === undefined
      ? ""
      : ` (filter: ${new Set(lane.filter).size} paths, sha256 ${filterDigest(content).slice(0, 12)})`;
  return `${lane.store} → ${uriPrefix}${mime}${filter}`;
}

/** Uploads the lane's filter file beside its export (`gs://B/.hcexport/filters/LANE-SHA256.txt`). */
async function ensureFilter(
  buckets: BucketAdmin,
  lane: ExportLane,
  uriPrefix: string,
  emit: EventSink<StartExportEvent>,
): Promise<{ uri: string; paths: number }> {
  const dest = parseGsUri(uriPrefix);
  if (!dest.ok) throw new UsageError(dest.error);
  if (buckets.ensureObject === undefined) throw new Error("this storage port cannot upload a filter file");
  const content = filterFileContent(lane.filter ?? []);
  const name = filterObjectName(lane.prefix, content);
  const { created } = await buckets.ensureObject(dest.value.bucket, name, content, "text/plain");
  const uri = `gs://${dest.value.bucket}/${name}`;
  const paths = new Set(lane.filter).size;
  emit({ kind: "export.filter", store: lane.store, uri, paths, uploaded: created });
  return { uri, paths };
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
  export: (r: ExportResult) =>
    `${r.operation}${r.mimeType === undefined ? "" : ` as ${r.mimeType}`}${r.filter === undefined ? "" : ` (filter: ${r.filter.paths} paths in ${r.filter.uri})`}`,
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

/** The options of an export step (at-most-once) of `lane`, starting `what` (`STORE → DESTINATION`). */
export const exportOptions = (api: HealthcareApi, lane: string, needs: readonly StepRef[], what: string) => ({
  idempotency: "at-most-once" as const,
  lane,
  needs,
  describe: what,
  input: what,
  ...extras.export(api),
});

/** The options of the wait step (resumable) of `lane`, polling what `start` started. */
export const waitOptions = (lane: string, start: StepRef<ExportResult>) => ({
  idempotency: "resumable" as const,
  lane,
  needs: [start],
  describe: `poll the export of ${lane} to its end`,
  ...extras.wait,
});

/** The preconditions are re-verified whenever an export will start. */
const EXPORTING = ["export:*"];

/** The options of the bucket, IAM and annotations steps. */
export const preconditionOptions = {
  bucket: (b: string) => ({
    idempotency: "idempotent" as const,
    describe: `ensure gs://${b}`,
    input: `gs://${b}`,
    recheckWhen: EXPORTING,
    ...extras.bucket(b),
  }),
  iam: (bucket: StepRef, agent: string, grant: boolean) => ({
    idempotency: "idempotent" as const,
    needs: [bucket],
    describe: `${agent} → ${EXPORT_ROLE} (${grant ? "grant if missing" : "exit 3 if missing"})`,
    input: memberOf(agent),
    recheckWhen: EXPORTING,
    ...extras.iam(agent),
  }),
  annotations: (a: AnnotationsSpec) => ({
    idempotency: "idempotent" as const,
    describe: `DocumentReference/${a.documentReference} → ${a.dest}`,
    input: `${a.store}/fhir/DocumentReference/${a.documentReference} → ${a.dest}`,
    ...extras.annotations,
  }),
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
