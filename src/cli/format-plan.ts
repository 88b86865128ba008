import type { PlannedStep } from "../workflow/graph.ts";
import { table } from "./format.ts";

/** `plan`: the graph (each step with what it needs) and what a run would do with each step. */
export function planTable(plan: readonly PlannedStep[]): string {
  const rows = [["step", "lane", "needs", "action", "why", "does"]];
  for (const p of plan)
    rows.push([
      p.key,
      p.lane ?? "",
      [...p.needs, ...p.follows.map((f) => `~${f}`)].join(", ") || "-",
      p.action,
      p.reason,
      p.describe,
    ]);
  const skipped = plan.filter((p) => p.action === "skip").length;
  return `${table(rows)}\n${skipped} of ${plan.length} steps would be skipped (replayed from the journal); ~ = runs alongside, finishes after`;
}

/** One row per step of the graph, every lane: its journal record and what the next run would do. */
export interface StepStatusRow {
  readonly key: string;
  readonly lane?: string;
  readonly status: string;
  readonly summary?: string;
  readonly startedAt?: string;
  readonly finishedAt?: string;
  readonly error?: string;
  readonly nextRun: PlannedStep["action"];
}

export function statusRows(plan: readonly PlannedStep[]): StepStatusRow[] {
  return plan.map((p) => ({
    key: p.key,
    ...(p.lane === undefined ? {} : { lane: p.lane }),
    status: p.record?.status ?? "not yet",
    ...(p.summary === undefined ? {} : { summary: p.summary }),
    ...(p.record === undefined ? {} : { startedAt: p.record.startedAt }),
    ...(p.record?.finishedAt === undefined ? {} : { finishedAt: p.record.finishedAt }),
    ...(p.record?.error === undefined ? {} : { error: p.record.error }),
    nextRun: p.action,
  }));
}

export function statusTable(rows: readonly StepStatusRow[]): string[][] {
  return rows.map((r) => [
    r.key.replace(":", " "),
    `${r.status}${r.summary === undefined ? "" : ` ${r.summary}`}${r.error === undefined ? "" : `: ${r.error}`}${r.finishedAt === undefined ? "" : ` at ${r.finishedAt}`} (next run: ${r.nextRun})`,
  ]);
}
