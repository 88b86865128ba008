import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { Argv, CommandModule } from "yargs";
import { loadConfig, type LoadedConfig } from "../../config/load.ts";
import { eitherSignal } from "../../core/abort.ts";
import { DestinationError, exitCodeOf, interruptionOf, PartialFailureError, UsageError } from "../../core/errors.ts";
import { redactSecrets } from "../../core/redact.ts";
import { bigqueryLane } from "../../pipeline/bigquery-lane.ts";
import type { OptionalLane } from "../../pipeline/lanes.ts";
import { fhirExportLane } from "../../pipeline/store-lane.ts";
import { planRun, runPipeline, type PipelineResult, type PipelineSpec } from "../../pipeline/pipeline.ts";
import { planTable, statusRows } from "../format-plan.ts";
import { acquireLock, DEFAULT_STALE_AFTER_MS } from "../../workflow/lock.ts";
import { adoptEndpoint, FileStateStore } from "../../workflow/state.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { formatPipelineEvent, table } from "../format.ts";
import { formatWorkflowEvent } from "../format-workflow.ts";
import { createServices, resolveServiceAgent } from "../services.ts";

export interface RunArgs extends GlobalArgs {
  config: string;
  "grant-iam"?: boolean;
  "dry-run": boolean;
  force: boolean;
  "fresh-export": boolean;
  follow: boolean;
  concurrency?: number;
  report?: string;
  "lock-stale-after": number;
}

export const configPositional = <T>(y: Argv<T>) =>
  y.positional("config", {
    type: "string",
    default: "config/siim.json",
    describe: "config file (see config/siim.json)",
  });

export function runOptions<T>(y: Argv<T>) {
  return configPositional(y)
    .option("grant-iam", {
      type: "boolean",
      describe: "grant the service agent roles/storage.objectAdmin if missing (overrides the config's grantIam)",
    })
    .option("dry-run", { type: "boolean", default: false, describe: "print the plan; change nothing (same as `plan`)" })
    .option("force", { type: "boolean", default: false, describe: "redo steps an earlier run finished" })
    .option("fresh-export", {
      type: "boolean",
      default: false,
      describe: "start new exports even if an earlier run finished them (the mirror stays incremental)",
    })
    .option("follow", {
      type: "boolean",
      default: true,
      describe: "mirror while the export runs (--no-follow: mirror after the export ends)",
    })
    .option("concurrency", { type: "number", describe: "parallel downloads (overrides mirror.concurrency)" })
    .option("report", { type: "string", describe: "write a JSON report of this run to FILE" })
    .option("lock-stale-after", {
      type: "number",
      default: DEFAULT_STALE_AFTER_MS / 1000,
      describe:
        "seconds without a heartbeat after which the lock of a run on another host or pid namespace is taken over",
    });
}

/** The pipeline spec of a loaded config. */
export function specOf(loaded: LoadedConfig, serviceAgent: string, follow = true): PipelineSpec {
  const c = loaded.config;
  return {
    bucket: {
      name: c.bucket.name,
      project: c.project,
      location: c.bucket.location,
      storageClass: c.bucket.storageClass,
      uniformAccess: c.bucket.uniformAccess,
    },
    serviceAgent,
    grantIam: c.grantIam,
    exports: c.exports,
    ...(c.annotations === undefined ? {} : { annotations: c.annotations }),
    concurrency: c.mirror.concurrency,
    delete: c.mirror.delete,
    follow,
    lanes: optionalLanes(c),
  };
}

/** The config's optional lanes: a BigQuery lane per `exports[i].bigquery`, then each of `fhirExports`. */
export function optionalLanes(c: LoadedConfig["config"]): OptionalLane[] {
  return [
    ...c.exports.flatMap((e) =>
      e.bigquery === undefined ? [] : [bigqueryLane({ store: e.store, lane: `${e.prefix}.bq`, ...e.bigquery })],
    ),
    ...(c.fhirExports ?? []).map((f) =>
      fhirExportLane({ store: f.store ?? c.annotations!.store, prefix: f.prefix, dest: f.dest }),
    ),
  ];
}

/** `hcexport run [CONFIG]`: the whole workflow, checkpointed and resumable, under a lock. */
export const runCommand = (io: CliIo): CommandModule<GlobalArgs, RunArgs> => ({
  command: "run [config]",
  describe: "ensure bucket → check/grant IAM → export → wait → mirror → annotations (resumable)",
  builder: (y) => runOptions(y) as never,
  handler: async (args) => {
    const { out } = createContext(args, io);
    out.use(formatWorkflowEvent).use(formatPipelineEvent);
    const loaded = await loadConfig(path.resolve(io.cwd, args.config), {
      project: args.project,
      grantIam: args["grant-iam"],
      concurrency: args.concurrency,
    });
    // Credentials are resolved up front (exit 3 within seconds, with the fix), except for a plan.
    const services = await createServices(args, io, loaded.config, { credentials: !args["dry-run"] });
    const startedAt = new Date();
    let result: PipelineResult | undefined;
    let spec: PipelineSpec | undefined;
    let failure: unknown;
    const staleAfter = args["lock-stale-after"];
    if (!(Number.isFinite(staleAfter) && staleAfter > 0))
      throw new UsageError(`--lock-stale-after must be a positive number of seconds, not ${staleAfter}`);
    const lock = args["dry-run"]
      ? undefined
      : await acquireLock(path.join(loaded.stateDir, "lock"), {
          command: `run ${args.config}`,
          staleAfterMs: staleAfter * 1000,
        });
    if (lock?.tookOver !== undefined) out.line(`! took over the lock ${lock.path}: ${lock.tookOver}`);
    const state = await FileStateStore.open(loaded.stateDir);
    try {
      const endpoint = services.endpoints.healthcare;
      if (state.state.endpoint !== endpoint) {
        const previous = state.state.endpoint;
        if (args["dry-run"]) adoptEndpoint(state.state, endpoint);
        else await state.update((s) => void adoptEndpoint(s, endpoint));
        if (previous !== undefined)
          out.line(
            `! ${path.join(loaded.stateDir, "state.json")} was recorded against ${previous}; starting over for ${endpoint}`,
          );
      }
      if (args["dry-run"]) {
        // The plan is computed from config + state only: no call, not even the project-number lookup.
        const agent =
          loaded.config.serviceAgent ??
          state.state.steps["iam"]?.input?.replace(/^serviceAccount:/, "") ??
          `(the Healthcare service agent of ${loaded.config.exports[0]!.store.split("/")[1]}, looked up at run time)`;
        const spec = specOf(loaded, agent, args.follow);
        const plan = planRun(spec, state.state, { force: args.force, freshExport: args["fresh-export"] });
        out.result(planTable(plan), { plan });
        return;
      }
      spec = specOf(loaded, await resolveServiceAgent(loaded.config, services), args.follow);
      await state.update((s) => void (s.lastRun = { startedAt: startedAt.toISOString() }));
      result = await runPipeline(spec, services.ports, {
        onEvent: out.emit,
        signal: eitherSignal(io.signal, lock?.lost) ?? io.signal,
        state,
        force: args.force,
        freshExport: args["fresh-export"],
      });
      const downloaded = result.mirrors.reduce((n, m) => n + m.summary.downloaded, 0);
      const rows = [["prefix", "listed", "downloaded", "up to date", "failed", "refused", "MiB", "seconds"]];
      for (const m of result.mirrors)
        rows.push(
          [
            m.prefix,
            m.summary.listed,
            m.summary.downloaded,
            m.summary.skipped,
            m.summary.failed,
            m.summary.refused,
            (m.summary.bytes / 1048576).toFixed(1),
            (m.summary.durationMs / 1000).toFixed(2),
          ].map(String),
        );
      const nothing =
        result.operations.length === 0 && downloaded === 0
          ? "\nnothing changed: no export started, nothing downloaded"
          : "";
      const tables = result.tables.map(
        (t) => `\n${t.table} holds ${t.numRows} rows${t.replayed ? " (counted by an earlier run)" : ""}`,
      );
      out.result(`${table(rows)}${tables.join("")}${nothing}`, { result, nothingChanged: nothing !== "" });
      const full = result.mirrors.find((m) => m.summary.destinationFault !== undefined);
      if (full !== undefined)
        throw new DestinationError(full.dest, full.summary.destinationFault!, full.summary.downloaded);
      const bad = result.mirrors.reduce((n, m) => n + m.summary.failed + m.summary.refused, 0);
      if (bad > 0)
        throw new PartialFailureError(`${bad} objects were not mirrored (failed or refused); the rest landed`, bad, {
          hint: "run again to retry what failed; refused names are listed above",
        });
    } catch (err) {
      // Recorded (state, report) as the interruption it was, whatever the step threw while unwinding.
      failure = interruptionOf(io.signal) ?? (lock?.lost.aborted === true ? lock.lost.reason : err);
      throw failure;
    } finally {
      if (!args["dry-run"]) {
        const finishedAt = new Date().toISOString();
        const exitCode = failure === undefined ? 0 : exitCodeOf(failure);
        const error = failure instanceof Error ? redactSecrets(failure.message) : undefined;
        await state
          .update(
            (s) =>
              void (s.lastRun = {
                startedAt: startedAt.toISOString(),
                finishedAt,
                exitCode,
                ...(error === undefined ? {} : { error }),
              }),
          )
          .catch(() => {});
        if (args.report !== undefined) {
          const report = {
            startedAt: startedAt.toISOString(),
            finishedAt,
            durationMs: Date.now() - startedAt.getTime(),
            exitCode,
            ...(error === undefined ? {} : { error }),
            config: loaded.file,
            state: state.state,
            ...(spec === undefined ? {} : { steps: statusRows(planRun(spec, state.state)) }),
            ...(result === undefined
              ? {}
              : {
                  operations: result.operations,
                  thisRun: result.steps,
                  tables: result.tables,
                  mirrors: result.mirrors.map((m) => ({ prefix: m.prefix, dest: m.dest, ...m.summary })),
                }),
          };
          await writeFile(path.resolve(io.cwd, args.report), `${JSON.stringify(report, null, 2)}\n`);
        }
      }
      await lock?.release();
      await services.close();
    }
  },
});

/** `hcexport plan [CONFIG]`: what `run` would do; changes nothing. */
export const planCommand = (io: CliIo): CommandModule<GlobalArgs, RunArgs> => ({
  command: "plan [config]",
  describe: "print what `run` would do, changing nothing",
  builder: (y) => runOptions(y) as never,
  handler: async (args) => runCommand(io).handler({ ...args, "dry-run": true }),
});
