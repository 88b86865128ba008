import path from "node:path";
import type { CommandModule } from "yargs";
import { loadConfig } from "../../config/load.ts";
import { readState } from "../../workflow/state.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { table } from "../format.ts";
import { configPositional } from "./run.ts";

/** `hcexport status [CONFIG]`: the state of the last run, from `.hcexport/state.json`. */
export const statusCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs & { config: string }> => ({
  command: "status [config]",
  describe: "show the last run: steps, operations, counters, mirror totals",
  builder: (y) => configPositional(y) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    const loaded = await loadConfig(path.resolve(io.cwd, args.config));
    const s = await readState(path.join(loaded.stateDir, "state.json"));
    const rows = [["what", "state"]];
    rows.push([
      "last run",
      s.lastRun === undefined
        ? "never"
        : `${s.lastRun.startedAt} → ${s.lastRun.finishedAt ?? "(running or killed)"}${s.lastRun.exitCode === undefined ? "" : `, exit ${s.lastRun.exitCode}`}`,
    ]);
    if (s.lastRun?.error !== undefined) rows.push(["error", s.lastRun.error]);
    rows.push([
      "bucket",
      s.bucket === undefined
        ? "not yet"
        : `gs://${s.bucket.name} (${s.bucket.created ? "created" : "existed"}) at ${s.bucket.at}`,
    ]);
    rows.push([
      "iam",
      s.iam === undefined ? "not yet" : `${s.iam.member} ${s.iam.granted ? "granted" : "already bound"} at ${s.iam.at}`,
    ]);
    for (const [prefix, e] of Object.entries(s.exports)) {
      rows.push([
        `export ${prefix}`,
        `${e.status} ${e.operation ?? ""}${e.counters ? ` (${e.counters.success} ok, ${e.counters.failure} failed)` : ""}${e.error ? `: ${e.error}` : ""}`,
      ]);
    }
    for (const [prefix, m] of Object.entries(s.mirrors)) {
      rows.push([
        `mirror ${prefix}`,
        `${m.downloaded} downloaded, ${m.skipped} up to date, ${m.failed} failed, ${m.refused} refused, ${(m.bytes / 1048576).toFixed(1)} MiB at ${m.at}`,
      ]);
    }
    if (s.annotations !== undefined)
      rows.push([
        "annotations",
        `${s.annotations.path}: ${s.annotations.images} images, ${s.annotations.imagesWithPneumothorax} with pneumothorax`,
      ]);
    out.result(table(rows), { state: s });
  },
});
