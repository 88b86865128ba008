import yargs from "yargs";
import { ExitCode, HcexportError, exitCodeOf, interruptionOf } from "../core/errors.ts";
import { commands } from "./commands/index.ts";
import { Output } from "./output.ts";
import { closeOutputs, type CliIo } from "./context.ts";

/**
 * Parses `argv` and runs one command with the given process edges. Returns the exit code instead
 * of exiting, so tests can run the CLI in-process.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode: number = ExitCode.Ok;
  const parser = yargs([...argv])
    .scriptName("hcexport")
    .env("HCEXPORT")
    .usage("$0 <command> [options]\n\nGet DICOM data out of Google Cloud Healthcare API stores and onto disk.")
    .option("json", { type: "boolean", default: false, describe: "NDJSON events on stdout, nothing else" })
    .option("quiet", { alias: "q", type: "boolean", default: false, describe: "only warnings and errors" })
    .option("verbose", { alias: "v", type: "boolean", default: false, describe: "debug detail (never credentials)" })
    .option("project", { type: "string", describe: "Google Cloud project for new buckets and quota" })
    .option("healthcare-endpoint", {
      type: "string",
      describe: "Healthcare API base URL (default https://healthcare.googleapis.com)",
    })
    .option("storage-endpoint", {
      type: "string",
      describe: "Cloud Storage base URL (default https://storage.googleapis.com)",
    })
    .option("resource-manager-endpoint", {
      type: "string",
      describe: "Resource Manager base URL (default https://cloudresourcemanager.googleapis.com)",
    })
    .option("emulator", {
      type: "string",
      describe: "base URL of a running `hcexport emulator`: sets all three endpoints, no auth",
    })
    .group(
      [
        "json",
        "quiet",
        "verbose",
        "project",
        "healthcare-endpoint",
        "storage-endpoint",
        "resource-manager-endpoint",
        "emulator",
      ],
      "Global options:",
    )
    .demandCommand(1, "Name a command; see --help.")
    .strict()
    .recommendCommands()
    .help()
    .alias("help", "h")
    .version()
    .wrap(Math.min(110, (io.stdout as { columns?: number }).columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new HcexportError(msg, ExitCode.Usage);
    });
  for (const make of commands) parser.command(make(io));
  try {
    await parser.parseAsync();
    closeOutputs(io, false);
  } catch (thrown) {
    closeOutputs(io, true);
    // Whatever a step threw while it unwound (an AbortError, a cut stream), a signal is the news.
    const err = interruptionOf(io.signal) ?? thrown;
    exitCode = exitCodeOf(err);
    reportFailure(err, argv, io);
  }
  return exitCode;
}

/** Prints a failure the one way every command does: `error: …` + `fix: …`, or an `error` event with --json. */
export function reportFailure(err: unknown, argv: readonly string[], io: Pick<CliIo, "stdout" | "stderr">): void {
  const out = new Output({
    json: argv.includes("--json"),
    quiet: false,
    verbose: argv.includes("--verbose"),
    stdout: io.stdout,
    stderr: io.stderr,
  });
  const message = err instanceof Error ? err.message : String(err);
  const hint = err instanceof HcexportError ? err.hint : undefined;
  out.error(message, { exitCode: exitCodeOf(err), ...(hint === undefined ? {} : { hint }) });
  if (!(err instanceof HcexportError) && argv.includes("--verbose") && err instanceof Error && err.stack !== undefined)
    io.stderr.write(`${err.stack}\n`);
}
