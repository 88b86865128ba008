import type { StepRef, Workflow } from "../workflow/graph.ts";
import type { PipelineSpec, RunHooks } from "./pipeline.ts";
import type { BucketResult, IamResult, PipelinePorts } from "./steps.ts";

/** What a lane builds on: the bucket and IAM steps, the run's spec, ports and hooks. */
export interface LaneUpstream {
  readonly bucket: StepRef<BucketResult>;
  readonly iam: StepRef<IamResult>;
  readonly spec: PipelineSpec;
  readonly ports: PipelinePorts;
  readonly hooks: RunHooks;
}

/**
 * An optional lane (BigQuery metadata export, FHIR store export, …): adds its steps to the
 * workflow after the store lanes. Name at-most-once export steps `export:…` (e.g.
 * `export:train.bq`) and start them with `exportStep` (one start at a time, journaled, so a resumed
 * lane never adopts another lane's export); the bucket/IAM preconditions are re-verified whenever
 * they will run; give every step a `lane` so `plan` and `status` group it.
 */
export interface OptionalLane {
  readonly name: string;
  add(wf: Workflow, upstream: LaneUpstream): void;
}
