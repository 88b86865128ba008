import { Workflow, type StepContext } from "../workflow/graph.ts";
import type { LaneUpstream } from "./lanes.ts";
import type { PipelineSpec, RunHooks } from "./pipeline.ts";
import * as steps from "./steps.ts";
import { addStoreLane } from "./store-lane.ts";

/**
 * The seed's workflow as a graph: ensure the bucket → check (or grant) the service agent's role →
 * for each store a lane: start the export → wait for its operation → mirror the prefix (following
 * the export as it writes) — lanes in parallel; the annotations from the start; optional lanes
 * (BigQuery metadata, FHIR store exports) last. Step options are data, in steps.ts.
 */
export function siimWorkflow(spec: PipelineSpec, ports: steps.PipelinePorts, hooks: RunHooks): Workflow {
  const wf = new Workflow();
  const o = steps.preconditionOptions;
  const bucket = wf.step("bucket", o.bucket(spec.bucket.name), (ctx: StepContext) =>
    steps.bucketStep(ctx, ports.buckets, spec.bucket),
  );
  const iam = wf.step("iam", o.iam(bucket, spec.serviceAgent, spec.grantIam), (ctx: StepContext) =>
    steps.iamStep(ctx, ports.buckets, spec.bucket.name, spec.serviceAgent, spec.grantIam),
  );
  const [a, fetch] = [spec.annotations, ports.fetchAnnotations];
  if (a !== undefined && fetch !== undefined)
    wf.step("annotations", o.annotations(a), () => steps.annotationsStep(fetch, a, hooks.annotations));
  const up: LaneUpstream = { bucket, iam, spec, ports, hooks };
  for (const e of spec.exports) addStoreLane(wf, up, e);
  for (const optional of spec.lanes ?? []) optional.add(wf, up);
  return wf;
}
