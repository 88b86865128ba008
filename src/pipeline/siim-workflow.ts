import { Workflow, type StepContext } from "../workflow/graph.ts";
import { EXPORT_ROLE, memberOf } from "../workflow/iam-policy.ts";
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
  const x = steps.extras;
  const exporting = ["export:*"]; // preconditions are re-verified whenever an export will start
  const grant = spec.grantIam ? "grant if missing" : "exit 3 if missing";

  const bucket = wf.step(
    "bucket",
    {
      idempotency: "idempotent",
      describe: `ensure gs://${b}`,
      input: `gs://${b}`,
      recheckWhen: exporting,
      ...x.bucket(b),
    },
    (ctx: StepContext) => steps.bucketStep(ctx, ports.buckets, spec.bucket),
  );
  const iam = wf.step(
    "iam",
    {
      idempotency: "idempotent",
      needs: [bucket],
      describe: `${spec.serviceAgent} → ${EXPORT_ROLE} (${grant})`,
      input: memberOf(spec.serviceAgent),
      recheckWhen: exporting,
      ...x.iam(spec.serviceAgent),
    },
    (ctx: StepContext) => steps.iamStep(ctx, ports.buckets, b, spec.serviceAgent, spec.grantIam),
  );
  const a = spec.annotations;
  const fetch = ports.fetchAnnotations;
  if (a !== undefined && fetch !== undefined)
    wf.step(
      "annotations",
      {
        idempotency: "idempotent",
        describe: `DocumentReference/${a.documentReference} → ${a.dest}`,
        input: `${a.store}/fhir/DocumentReference/${a.documentReference} → ${a.dest}`,
        ...x.annotations,
      },
      (_: StepContext) => steps.annotationsStep(fetch, a, hooks.annotations),
    );
  for (const e of spec.exports) {
    const [lane, uri, follow] = [e.prefix, `gs://${b}/${e.prefix}`, spec.follow !== false];
    const start = wf.step(
      `export:${lane}`,
      {
        idempotency: "at-most-once",
        lane,
        needs: [iam],
        describe: `${e.store} → ${uri}`,
        input: `${e.store} → ${uri}`,
        ...x.export(ports.healthcare),
      },
      (ctx: StepContext) => steps.exportStep(ctx, ports.healthcare, e.store, uri, hooks.emit),
    );
    const wait = wf.step(
      `wait:${lane}`,
      { idempotency: "resumable", lane, needs: [start], describe: `poll the export of ${lane} to its end`, ...x.wait },
      (ctx: StepContext) => steps.waitStep(ctx, ports.healthcare, ctx.get(start).operation, hooks.poll, hooks.emit),
    );
    wf.step(
      `mirror:${lane}`,
      {
        idempotency: "resumable",
        lane,
        always: true,
        needs: [follow ? start : wait],
        follows: follow ? [wait] : [],
        describe: `${uri} → ${e.dest} (incremental${follow ? ", following the export" : ""})`,
        ...x.mirror,
      },
      (ctx: StepContext) =>
        steps.mirrorStep(ctx, ports.source, spec, e, {
          follow,
          until: follow ? ctx.settled(wait) : Promise.resolve(),
          emit: hooks.emit,
          keep: (s) => hooks.mirrored(e, s),
        }),
    );
  }
  for (const optional of spec.lanes ?? []) optional.add(wf, { bucket, iam, emit: hooks.emit });
  return wf;
}
