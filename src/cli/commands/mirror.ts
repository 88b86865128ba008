import path from "node:path";
import type { CommandModule } from "yargs";
import { DestinationError, HcexportError, PartialFailureError, UsageError } from "../../core/errors.ts";
import { parseGsUri } from "../../core/resource-names.ts";
import { resolveEndpoints } from "../../gcp/endpoints.ts";
import { gcsSource } from "../../gcp/gcs-objects.ts";
import { DEFAULT_CONCURRENCY, mirror } from "../../mirror/mirror.ts";
import { parseShard } from "../../mirror/shard.ts";
import { DEFAULT_TIMEOUT_MS, HttpClient } from "../../net/http-client.ts";
import { createContext, type CliIo, type GlobalArgs } from "../context.ts";
import { commandCredentials } from "../credentials.ts";
import { table } from "../format.ts";
import { formatMirrorEvent } from "../format-mirror.ts";

interface MirrorArgs extends GlobalArgs {
  source: string;
  dir: string;
  concurrency: number;
  delete: boolean;
  "max-delete"?: number;
  "dry-run": boolean;
  shard?: string;
  timeout: number;
  "allow-empty-source": boolean;
  fsync: boolean;
}

/** `hcexport mirror gs://B/PREFIX DIR`: verified, atomic, incremental copy of a prefix. */
export const mirrorCommand = (io: CliIo): CommandModule<GlobalArgs, MirrorArgs> => ({
  command: "mirror <source> <dir>",
  describe: "copy gs://BUCKET/PREFIX to DIR: parallel, verified (CRC32C), atomic, incremental",
  builder: (y) =>
    y
      .positional("source", { type: "string", describe: "gs://BUCKET[/PREFIX]" })
      .positional("dir", { type: "string", describe: "local destination directory" })
      .option("concurrency", {
        type: "number",
        default: DEFAULT_CONCURRENCY,
        describe: "parallel downloads (one keep-alive connection each)",
      })
      .option("delete", {
        type: "boolean",
        default: false,
        describe: "delete files in DIR that are not in the bucket (only after a run without any error)",
      })
      .option("max-delete", { type: "number", describe: "with --delete: delete nothing if more than N files would go" })
      .option("dry-run", {
        type: "boolean",
        default: false,
        describe: "print what would be downloaded and deleted; change nothing",
      })
      .option("shard", {
        type: "string",
        describe: "K/N: mirror only this stable hash partition of the names (for N machines)",
      })
      .option("timeout", {
        type: "number",
        default: DEFAULT_TIMEOUT_MS / 1000,
        describe: "seconds a response or a read may stall before the connection is dropped and the object retried",
      })
      .option("fsync", {
        type: "boolean",
        default: true,
        describe:
          "make each batch of files durable before it gets its final names (--no-fsync: no barriers, rclone's semantics; see the README on power loss)",
      })
      .option("allow-empty-source", {
        type: "boolean",
        default: false,
        describe: "with --delete: accept a source that lists no objects (and delete everything in DIR)",
      }) as never,
  handler: async (args) => {
    const src = parseGsUri(args.source);
    if (!src.ok) throw new UsageError(src.error);
    const shard = args.shard === undefined ? undefined : parseShard(args.shard);
    if (args.shard !== undefined && shard === undefined)
      throw new UsageError(`--shard must be K/N with 0 ≤ K < N, got "${args.shard}"`);
    if (!(Number.isInteger(args.concurrency) && args.concurrency >= 1 && args.concurrency <= 512))
      throw new UsageError("--concurrency must be an integer between 1 and 512");
    const maxDelete = args["max-delete"];
    if (maxDelete !== undefined && !(Number.isInteger(maxDelete) && maxDelete >= 0))
      throw new UsageError("--max-delete must be a whole number ≥ 0");
    if (maxDelete !== undefined && !args.delete) throw new UsageError("--max-delete only makes sense with --delete");
    if (!(Number.isFinite(args.timeout) && args.timeout > 0 && args.timeout <= 3600))
      throw new UsageError("--timeout must be a number of seconds between 0 and 3600");
    const timeoutMs = Math.round(args.timeout * 1000);
    const { out } = createContext(args, io);
    out.use(formatMirrorEvent);
    const endpoints = resolveEndpoints(args, io.env);
    const auth = await commandCredentials(args, io, endpoints, { projectId: args.project });
    // One keep-alive pool sized to the concurrency (+1 for the listing running alongside).
    const client = new HttpClient({ auth, connections: args.concurrency + 1, timeoutMs, signal: io.signal });
    try {
      const summary = await mirror({
        source: gcsSource(client, endpoints.storage),
        bucket: src.value.bucket,
        prefix: src.value.prefix,
        dest: path.resolve(io.cwd, args.dir),
        concurrency: args.concurrency,
        delete: args.delete,
        ...(maxDelete === undefined ? {} : { maxDelete }),
        dryRun: args["dry-run"],
        ...(shard === undefined ? {} : { shard }),
        onEvent: out.emit,
        signal: io.signal,
        idleTimeoutMs: timeoutMs,
        allowEmptySource: args["allow-empty-source"],
        fsync: args.fsync,
      });
      const dry = args["dry-run"];
      const text = table([
        [
          "listed",
          dry ? "would download" : "downloaded",
          "up to date",
          dry ? "would delete" : "deleted",
          "failed",
          "refused",
          "MiB",
          "seconds",
        ],
        [
          summary.listed,
          dry ? summary.wouldDownload : summary.downloaded,
          summary.skipped,
          dry ? summary.wouldDelete : summary.deleted,
          summary.failed,
          summary.refused,
          (summary.bytes / 1048576).toFixed(1),
          (summary.durationMs / 1000).toFixed(2),
        ].map(String),
      ]);
      const notes = [
        summary.noHash > 0
          ? `${summary.noHash} object(s) had no CRC32C or MD5: verified by size, compared by size + generation`
          : "",
        summary.directories > 0 ? `${summary.directories} folder placeholder(s) made as directories` : "",
      ].filter((l) => l !== "");
      out.result([text, ...notes].join("\n"), { summary });
      if (summary.destinationFault !== undefined)
        throw new DestinationError(path.resolve(io.cwd, args.dir), summary.destinationFault, summary.downloaded);
      const bad = summary.failed + summary.refused;
      // A listing that stopped (an HTTP error, a malformed answer) is the news: say why, not just "1 of 0".
      const stopped = summary.complete
        ? undefined
        : summary.failures.find((f) => f.reason.startsWith("listing or local walk stopped"));
      if (bad > 0) {
        const counts = `${bad} of ${summary.listed} objects were not mirrored (${summary.failed} failed, ${summary.refused} refused as unsafe names); the rest landed`;
        throw new PartialFailureError(
          stopped === undefined
            ? counts
            : `${stopped.name}: ${stopped.reason}; ${summary.downloaded + summary.skipped} of ${summary.listed} objects listed before that are in place`,
          bad,
          {
            hint:
              summary.failed > 0
                ? "run the same command again to retry what failed (finished files are kept)"
                : "unsafe names cannot be mirrored to a file system as-is; see the messages above",
          },
        );
      }
      if (summary.deleteSkipped !== undefined) {
        throw new HcexportError(`not deleting: ${summary.deleteSkipped}`, undefined, {
          hint: "check the list with --dry-run, then raise --max-delete if the deletions are intended",
        });
      }
    } finally {
      await client.close();
    }
  },
});
