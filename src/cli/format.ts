import type { PipelineEvent } from "../pipeline/export-and-mirror.ts";
import type { AnyEvent, Formatter, Rendered } from "./output.ts";

const MiB = 1024 * 1024;

/** Human rendering of workflow, operation and mirror events. */
export const formatPipelineEvent: Formatter = (event: AnyEvent): Rendered | undefined => {
  const e = event as PipelineEvent;
  switch (e.kind) {
    case "step.start":
      return { status: `${e.step}: ${e.detail}` };
    case "step.done":
      return { line: `✔ ${e.step}: ${e.detail}`, done: "succeed" };
    case "operation.progress":
      return { status: `wait: ${shortOp(e.operation)} ${e.success} exported, ${e.failure} failed, ${e.pending} pending` };
    case "operation.retry":
      return { line: `  retrying ${shortOp(e.operation)} in ${(e.delayMs / 1000).toFixed(1)} s: ${e.error}`, level: "debug" };
    case "operation.done":
      return e.ok ? undefined : { line: `✖ ${shortOp(e.operation)}: ${e.success} exported, ${e.failure} failed`, level: "error" };
    case "mirror.start":
      return { status: `mirror: listing ${e.source}` };
    case "mirror.progress": {
      const secs = e.elapsedMs / 1000;
      const rate = secs > 0 ? e.bytes / MiB / secs : 0;
      return { status: `mirror: ${e.downloaded} downloaded, ${e.skipped} up to date of ${e.listed} listed · ${(e.bytes / MiB).toFixed(1)} MiB · ${rate.toFixed(1)} MiB/s` };
    }
    case "mirror.refused":
      return { line: `! refused ${JSON.stringify(e.name)}: ${e.reason}`, level: "warn" };
    case "mirror.failed":
      return { line: `✖ failed ${JSON.stringify(e.name)}: ${e.reason}`, level: "error" };
    case "mirror.retry":
      return { line: `  retry ${e.name} (attempt ${e.attempt}, in ${e.delayMs} ms): ${e.reason}`, level: "debug" };
    case "mirror.file":
      return e.action === "would-download" ? { line: `would download ${e.name} (${e.bytes} bytes)` } : undefined;
    case "mirror.done":
      return undefined;
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
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}
