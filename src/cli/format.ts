import type { PipelineEvent } from "../pipeline/pipeline.ts";
import { formatMirrorEvent } from "./format-mirror.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

/** Human rendering of workflow, operation and mirror events. */
export const formatPipelineEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  if (event.kind.startsWith("mirror.")) return formatMirrorEvent(event);
  const e = event as PipelineEvent;
  switch (e.kind) {
    case "step.start":
      return { status: `${stepLabel(e)}: ${e.action === "recheck" ? "verifying " : ""}${e.detail}`, key: e.key };
    case "step.done":
      return { line: `✔ ${stepLabel(e)}: ${e.detail}`, done: "succeed", key: e.key };
    case "step.failed":
      return { line: `✖ ${stepLabel(e)}: ${e.error}`, level: "error", done: "fail", key: e.key };
    case "step.blocked":
      return { line: `  ${stepLabel(e)}: not run (${e.by} did not finish)`, level: "warn" };
    case "wait.resume":
      return { line: `  resuming ${e.operation} (started ${e.startedAt}); no new export` };
    case "operation.progress":
      return {
        status: `wait: ${shortOp(e.operation)} ${e.success} exported, ${e.failure} failed, ${e.pending} pending`,
      };
    case "operation.retry":
      return {
        line: `  retrying ${shortOp(e.operation)} in ${(e.delayMs / 1000).toFixed(1)} s: ${e.error}`,
        level: "debug",
      };
    case "operation.done":
      return e.ok
        ? undefined
        : { line: `✖ ${shortOp(e.operation)}: ${e.success} exported, ${e.failure} failed`, level: "error" };
    default:
      return undefined;
  }
};

/** `export train`, `bucket`. */
function stepLabel(e: { step: string; lane?: string }): string {
  return e.lane === undefined ? e.step : `${e.step} ${e.lane}`;
}

function shortOp(name: string): string {
  return name.replace(/^projects\/[^/]+\/locations\/[^/]+\/datasets\/([^/]+)\/operations\//, "$1/op/");
}

/** A plain text table with left-aligned columns. */
export function table(rows: ReadonlyArray<ReadonlyArray<string>>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}
