import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Argv, CommandModule } from "yargs";
import { DestinationError, PartialFailureError, UsageError } from "../../core/errors.ts";
import { dicomwebSource, resolveDicomwebBase } from "../../dicomweb/client.ts";
import { DEFAULT_DICOMWEB_CONCURRENCY, DEFAULT_PAGE_SIZE, pull, type RetrieveMode } from "../../dicomweb/pull.ts";
import { resolveEndpoints } from "../../gcp/endpoints.ts";
import { DEFAULT_TIMEOUT_MS, HttpClient } from "../../net/http-client.ts";
import { dicomwebAuth } from "../dicomweb-connect.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { commandCredentials } from "../credentials.ts";
import { table } from "../format.ts";
import { formatDicomwebEvent } from "../format-dicomweb.ts";
import { parseFilters } from "../../dicomweb/query.ts";
import { parseUidsFile, scopesOf, type Subset } from "../../dicomweb/subset.ts";
import { getCommand } from "./dicomweb-get.ts";
import { searchCommand } from "./dicomweb-search.ts";

interface PullArgs extends GlobalArgs {
  source: string;
  dir: string;
  "page-size": number;
  concurrency: number;
  mode: RetrieveMode;
  search: "auto" | "instances" | "studies";
  study: string[];
  series: string[];
  filter: string[];
  uids?: string;
  fsync: boolean;
}

export { dicomwebAuth } from "../dicomweb-connect.ts";

const pullCommand = (io: CliIo): CommandModule<GlobalArgs, PullArgs> => ({
  command: "pull <source> <dir>",
  describe: "QIDO-RS search every instance and WADO-RS retrieve the missing ones into DIR/STUDY/SERIES/INSTANCE.dcm",
  builder: (y) =>
    y
      .positional("source", {
        type: "string",
        describe:
          "a DICOM store (projects/P/locations/L/datasets/D/dicomStores/S) or a DICOMweb base URL (e.g. http://127.0.0.1:8042/dicom-web)",
      })
      .positional("dir", { type: "string", describe: "local destination directory" })
      .option("page-size", {
        type: "number",
        default: DEFAULT_PAGE_SIZE,
        describe: "QIDO-RS page (limit); capped at the Healthcare API maxima (5,000 studies, 50,000 instances)",
      })
      .option("concurrency", {
        type: "number",
        default: DEFAULT_DICOMWEB_CONCURRENCY,
        describe: "parallel WADO-RS requests",
      })
      .option("mode", {
        choices: ["instance", "series", "study"] as const,
        default: "instance" as RetrieveMode,
        describe: "retrieve each instance, or each series/study as one multipart/related stream",
      })
      .option("search", {
        choices: ["auto", "instances", "studies"] as const,
        default: "auto" as const,
        describe: "auto: instance-level search checked against per-study counts; studies: per-study searches only",
      })
      .option("study", {
        type: "string",
        array: true,
        default: [] as string[],
        describe: "only this study (repeatable)",
      })
      .option("series", {
        type: "string",
        array: true,
        default: [] as string[],
        describe: "only this series (repeatable)",
      })
      .option("filter", {
        type: "string",
        array: true,
        default: [] as string[],
        describe: "only instances matching KEY=VALUE (keyword or tag; QIDO-RS matching, e.g. Modality=CR)",
      })
      .option("uids", {
        type: "string",
        describe: "a file of study UIDs or studies/S[/series/SE[/instances/I]] paths, one per line (# comments)",
      })
      .option("timeout", {
        type: "number",
        default: DEFAULT_TIMEOUT_MS / 1000,
        describe: "seconds a response or a read may stall before the connection is dropped and the request retried",
      })
      .option("fsync", {
        type: "boolean",
        default: true,
        describe:
          "make each batch of files durable before it gets its final names (--no-fsync: no barriers, rclone's semantics; see the README on power loss)",
      })
      .epilog(
        "Auth for URLs: HCEXPORT_DICOMWEB_TOKEN (bearer) or HCEXPORT_DICOMWEB_USER/HCEXPORT_DICOMWEB_PASSWORD (basic). Stores use Google Application Default Credentials.",
      ) as never,
  handler: async (args) => {
    const pageSize = args["page-size"];
    if (!(Number.isInteger(pageSize) && pageSize >= 1)) throw new UsageError("--page-size must be a whole number ≥ 1");
    if (!(Number.isInteger(args.concurrency) && args.concurrency >= 1 && args.concurrency <= 256))
      throw new UsageError("--concurrency must be an integer between 1 and 256");
    const subset = await subsetOf(args, io);
    const endpoints = resolveEndpoints(args, io.env);
    const target = resolveDicomwebBase(args.source, endpoints.healthcare);
    const { out } = createContext(args, io);
    out.use(formatDicomwebEvent);
    const auth =
      target.kind === "store"
        ? await commandCredentials(args, io, endpoints, { projectId: args.project })
        : dicomwebAuth(io.env, target.userinfo);
    const timeout = (args as { timeout?: number }).timeout ?? DEFAULT_TIMEOUT_MS / 1000;
    if (!(Number.isFinite(timeout) && timeout > 0 && timeout <= 3600))
      throw new UsageError("--timeout must be a number of seconds between 0 and 3600");
    const client = new HttpClient({
      auth,
      connections: args.concurrency + 1,
      timeoutMs: Math.round(timeout * 1000),
      signal: io.signal,
    });
    try {
      const summary = await pull({
        source: dicomwebSource(client, target.base),
        label: target.label,
        dest: path.resolve(io.cwd, args.dir),
        pageSize,
        concurrency: args.concurrency,
        mode: args.mode,
        search: args.search,
        ...(subset === undefined ? {} : { subset }),
        onEvent: out.emit,
        signal: io.signal,
        fsync: args.fsync,
      });
      const secs = summary.durationMs / 1000;
      out.result(
        table([
          ["listed", "downloaded", "already here", "failed", "refused", "MiB", "seconds", "instances/s"],
          [
            summary.listed,
            summary.downloaded,
            summary.skipped,
            summary.failed,
            summary.refused,
            (summary.bytes / 1048576).toFixed(1),
            secs.toFixed(2),
            secs > 0 ? (summary.downloaded / secs).toFixed(0) : "–",
          ].map(String),
        ]),
        { summary },
      );
      if (summary.destinationFault !== undefined)
        throw new DestinationError(path.resolve(io.cwd, args.dir), summary.destinationFault, summary.downloaded);
      const bad = summary.failed + summary.refused;
      if (bad > 0) {
        throw new PartialFailureError(
          `${bad} of ${summary.listed + summary.refused} instances were not pulled (${summary.failed} failed, ${summary.refused} refused); the rest landed`,
          bad,
          {
            hint:
              summary.failed > 0
                ? "run the same command again: only what is missing is retrieved"
                : "refused: UIDs that cannot be file names, or subset entries the server lists nothing for; see the messages above",
          },
        );
      }
    } finally {
      await client.close();
    }
  },
});

/** The subset `--study/--series/--filter/--uids` ask for, or undefined for the whole store. */
async function subsetOf(args: PullArgs, io: CliIo): Promise<Subset | undefined> {
  if (args.study.length + args.series.length + args.filter.length === 0 && args.uids === undefined) return undefined;
  const scopes = scopesOf(args.study, args.series);
  if (args.uids !== undefined) {
    const file = path.resolve(io.cwd, args.uids);
    const text = await readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`--uids ${args.uids}: ${err.code ?? err.message}`);
    });
    const listed = parseUidsFile(text, args.uids);
    if (listed.length === 0) throw new UsageError(`--uids ${args.uids}: no UIDs in the file`);
    scopes.push(...listed);
  }
  return { scopes, filters: parseFilters(args.filter) };
}

/** `hcexport dicomweb pull …` (the seed's Method 1, done properly). */
export const dicomwebCommand = (io: CliIo): CommandModule<GlobalArgs, GlobalArgs> => ({
  command: "dicomweb <command>",
  describe: "direct DICOMweb download (QIDO-RS + WADO-RS) from a Healthcare DICOM store or any DICOMweb server",
  builder: (y: Argv<GlobalArgs>) =>
    y
      .command(pullCommand(io) as never)
      .command(searchCommand(io) as never)
      .command(getCommand(io) as never)
      .demandCommand(1) as never,
  handler: () => {},
});
