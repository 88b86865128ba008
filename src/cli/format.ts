import type { PipelineEvent } from "../pipeline/export-and-mirror.ts";
import { formatMirrorEvent } from "./format-mirror.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

/** Human rendering of workflow, operation and mirror events. */
export const formatPipelineEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  if (event.kind.startsWith("mirror.")) return formatMirrorEvent(event);
  const e = event as PipelineEvent;
  switch (e.kind) {
    case "step.start":
      return { status: `${e.step}: ${e.detail}` };
    case "step.done":
      return { line: `✔ ${e.step}: ${e.detail}`, done: "succeed" };
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
