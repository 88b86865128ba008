import path from "node:path";
import type { CommandModule } from "yargs";
import { loadConfig } from "../../config/load.ts";
import { planRun } from "../../pipeline/pipeline.ts";
import { readState } from "../../workflow/state.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { statusRows, statusTable } from "../format-plan.ts";
import { table } from "../format.ts";
import { configPositional, specOf } from "./run.ts";

/** `hcexport status [CONFIG]`: the last run, every step of every lane, from `.hcexport/state.json` and the graph. */
export const statusCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs & { config: string }> => ({
  command: "status [config]",
  describe: "show the last run: steps of every lane, operations, counters, mirror totals",
  builder: (y) => configPositional(y) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    const loaded = await loadConfig(path.resolve(io.cwd, args.config));
    const s = await readState(path.join(loaded.stateDir, "state.json"));
    const agent =
      loaded.config.serviceAgent ?? s.steps["iam"]?.input?.replace(/^serviceAccount:/, "") ?? "(service agent)";
    const steps = statusRows(planRun(specOf(loaded, agent), s));
    const rows = [["what", "state"]];
    rows.push([
      "last run",
      s.lastRun === undefined
        ? "never"
        : `${s.lastRun.startedAt} → ${s.lastRun.finishedAt ?? "(running or killed)"}${s.lastRun.exitCode === undefined ? "" : `, exit ${s.lastRun.exitCode}`}`,
    ]);
    if (s.lastRun?.error !== undefined) rows.push(["error", s.lastRun.error]);
    rows.push(...statusTable(steps));
    out.result(table(rows), { state: s, steps });
  },
});
