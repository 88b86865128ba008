import type { StepContext, Workflow } from "../workflow/graph.ts";
import type { LaneUpstream, OptionalLane } from "./lanes.ts";
import * as steps from "./steps.ts";

/** A store exported to Cloud Storage and mirrored: a DICOM store of `exports`, or a FHIR store of `fhirExports`. */
export interface StoreLane extends steps.ExportLane {
  /** The object prefix in the bucket; also the lane's name. */
  readonly prefix: string;
  readonly dest: string;
}

/**
 * One store's lane: start the export to `gs://BUCKET/PREFIX` (at most once) → wait for its
 * operation → mirror the prefix to `dest` (following the export as it writes, unless `--no-follow`).
 */
export function addStoreLane(wf: Workflow, up: LaneUpstream, e: StoreLane): void {
  const { spec, ports, hooks } = up;
  const [lane, uri, follow] = [e.prefix, `gs://${spec.bucket.name}/${e.prefix}`, spec.follow !== false];
  const start = wf.step(
    `export:${lane}`,
    { ...steps.exportOptions(ports.healthcare, lane, [up.iam], steps.exportInput(e, uri)) },
    (ctx: StepContext) => steps.storeExportStep(ctx, ports, e, uri, hooks.emit),
  );
  const wait = wf.step(`wait:${lane}`, steps.waitOptions(lane, start), (ctx: StepContext) =>
    steps.waitStep(ctx, ports.healthcare, ctx.get(start).operation, hooks.poll, hooks.emit),
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
      ...steps.extras.mirror,
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

/**
 * A FHIR store's lane (config `fhirExports`): `fhirStores.export` to `gs://BUCKET/PREFIX` (one
 * NDJSON object per resource type), waited for and mirrored like a DICOM store's.
 */
export function fhirExportLane(e: StoreLane): OptionalLane {
  return { name: e.prefix, add: (wf, up) => addStoreLane(wf, up, e) };
}
