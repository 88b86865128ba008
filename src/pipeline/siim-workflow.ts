import { Workflow, type StepContext } from "../workflow/graph.ts";
import { EXPORT_ROLE, memberOf } from "../workflow/iam-policy.ts";
import type { MirrorSummary } from "../mirror/mirror.ts";
import type { PipelineSpec, RunHooks } from "./pipeline.ts";
import * as steps from "./steps.ts";

/**
 * The seed's workflow as a graph: ensure the bucket → check (or grant) the service agent's role →
 * for each store a lane: start the export → wait for its operation → mirror the prefix (following
 * the export as it writes) — lanes in parallel; the annotations from the start; optional lanes last.
 */
export function siimWorkflow(spec: PipelineSpec, ports: steps.PipelinePorts, hooks: RunHooks): Workflow {
  const wf = new Workflow();
  const b = spec.bucket.name;
  const exporting = ["export:*"]; // preconditions are re-verified whenever an export will start

  const bucket = wf.step(
    "bucket",
    {
      idempotency: "idempotent",
      describe: `ensure gs://${b}`,
      input: `gs://${b}`,
      recheckWhen: exporting,
      summarize: (r) => (r.created ? `created gs://${b}` : `gs://${b} exists (ours)`),
    },
    (ctx: StepContext) => steps.bucketStep(ctx, ports.buckets, spec.bucket),
  );
  const iam = wf.step(
    "iam",
    {
      idempotency: "idempotent",
      needs: [bucket],
      describe: `${spec.serviceAgent} → ${EXPORT_ROLE}${spec.grantIam ? " (grant if missing)" : " (exit 3 if missing)"}`,
      input: memberOf(spec.serviceAgent),
      recheckWhen: exporting,
      summarize: (r) => (r.granted ? `granted ${EXPORT_ROLE} to ${spec.serviceAgent}` : "binding present"),
    },
    (ctx: StepContext) => steps.iamStep(ctx, ports.buckets, b, spec.serviceAgent, spec.grantIam),
  );
  if (spec.annotations !== undefined && ports.fetchAnnotations !== undefined) {
    const a = spec.annotations;
    const fetch = ports.fetchAnnotations;
    wf.step(
      "annotations",
      {
        idempotency: "idempotent",
        describe: `DocumentReference/${a.documentReference} → ${a.dest}`,
        input: `${a.store}/fhir/DocumentReference/${a.documentReference} → ${a.dest}`,
        summarize: (r) =>
          `${r.path}: ${r.images} images, ${r.imagesWithPneumothorax} with pneumothorax, ${r.masks} masks`,
      },
      async (_: StepContext) => {
        const got = await fetch(a);
        hooks.annotations(got);
        return { path: got.path, bytes: got.bytes, ...got.summary };
      },
    );
  }
  for (const e of spec.exports) {
    const uri = `gs://${b}/${e.prefix}`;
    const lane = e.prefix;
    const start = wf.step(
      `export:${lane}`,
      {
        idempotency: "at-most-once",
        lane,
        needs: [iam],
        describe: `${e.store} → ${uri}`,
        input: `${e.store} → ${uri}`,
        stillValid: (r) => steps.operationExists(ports.healthcare, r.operation),
        summarize: (r) => r.operation,
      },
      (ctx: StepContext) => steps.exportStep(ctx, ports.healthcare, e.store, uri, hooks.emit),
    );
    const wait = wf.step(
      `wait:${lane}`,
      {
        idempotency: "resumable",
        lane,
        needs: [start],
        describe: `poll the export of ${lane} to its end`,
        terminal: steps.isTerminal,
        summarize: (r) => `${r.success} exported, ${r.failure} failed`,
      },
      (ctx: StepContext) =>
        steps.waitStep(ctx, ports.healthcare, ctx.get(start).operation, hooks.poll ?? {}, hooks.emit),
    );
    const follow = spec.follow !== false;
    wf.step(
      `mirror:${lane}`,
      {
        idempotency: "resumable",
        lane,
        always: true,
        needs: [follow ? start : wait],
        follows: follow ? [wait] : [],
        describe: `${uri} → ${e.dest} (incremental${follow ? ", following the export" : ""})`,
        summarize: (r) =>
          `${r.downloaded} downloaded, ${r.skipped} up to date, ${r.failed + r.refused} failed or refused`,
      },
      (ctx: StepContext) =>
        steps.mirrorStep(
          ctx,
          {
            source: ports.source,
            bucket: b,
            prefix: e.prefix,
            dest: e.dest,
            concurrency: spec.concurrency,
            delete: spec.delete === true,
            follow,
            until: follow ? ctx.settled(wait) : Promise.resolve(),
            emit: hooks.emit,
          },
          (s: MirrorSummary) => hooks.mirrored(e, s),
        ),
    );
  }
  for (const optional of spec.lanes ?? []) optional.add(wf, { bucket, iam, emit: hooks.emit });
  return wf;
}
