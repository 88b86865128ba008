import type { EventSink } from "../core/events.ts";
import type { StepRef, Workflow } from "../workflow/graph.ts";
import type { BucketResult, IamResult } from "./steps.ts";

/** What an optional lane may build on: the bucket and IAM steps, and the run's event sink. */
export interface LaneUpstream {
  readonly bucket: StepRef<BucketResult>;
  readonly iam: StepRef<IamResult>;
  readonly emit: EventSink<never>;
}

/**
 * An optional lane (BigQuery metadata export, FHIR store export, …): adds its steps to the
 * workflow after the store lanes. Name at-most-once export steps `export:…` (e.g.
 * `export:train.bq`) and the bucket/IAM preconditions are re-verified whenever they will run; give
 * every step a `lane` so `plan` and `status` group it.
 */
export interface OptionalLane {
  readonly name: string;
  add(wf: Workflow, upstream: LaneUpstream): void;
}
