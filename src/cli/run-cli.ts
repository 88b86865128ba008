import { readFileSync } from "node:fs";
import { ExitCode, HcexportError, exitCodeOf, interruptionOf } from "../core/errors.ts";
import { commands, lazyCommandModule } from "./commands/index.ts";
import type { CliIo } from "./context.ts";

/** The package's version (package.json sits two levels above both src/cli and dist/cli). */
const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/**
 * Parses `argv` and runs one command with the given process edges. Returns the exit code instead
 * of exiting, so tests can run the CLI in-process.
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  // `hcexport --version` alone needs no parser (start-up, issue #14.5).
  if (argv.length === 1 && argv[0] === "--version") {
    io.stdout.write(`${VERSION}\n`);
    return ExitCode.Ok;
  }
  const { default: yargs } = await import("yargs");
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
      describe: "base URL of a running `hcexport emulator`: sets all three endpoints, never sends credentials",
    })
    .option("allow-insecure-auth", {
      type: "boolean",
      describe: "send Google credentials to a plain http:// endpoint that is not loopback (clear text; warns)",
    })
    .option("ca-cert", {
      type: "string",
      describe: "also trust the CA certificates in this PEM file (e.g. from `hcexport emulator --tls`)",
    })
    .middleware(async (args) => {
      const file = args["ca-cert"];
      if (typeof file === "string" && file !== "") await (await import("../net/trust.ts")).trustCaFile(file);
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
        "allow-insecure-auth",
        "ca-cert",
      ],
      "Global options:",
    )
    .demandCommand(1, "Name a command; see --help.")
    .strict()
    .recommendCommands()
    .help()
    .alias("help", "h")
    .version(VERSION)
    .wrap(Math.min(110, (io.stdout as { columns?: number }).columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new HcexportError(msg, ExitCode.Usage);
    });
  for (const entry of commands) parser.command(lazyCommandModule(entry, io));
  withoutHelpCache(parser);
  // Tiny and import-free, but kept off the start-up path like everything else here.
  const { closeOutputs } = await import("./open-outputs.ts");
  try {
    await parser.parseAsync();
    closeOutputs(io, false);
  } catch (thrown) {
    closeOutputs(io, true);
    // Whatever a step threw while it unwound (an AbortError, a cut stream), a signal is the news.
    const err = interruptionOf(io.signal) ?? thrown;
    exitCode = exitCodeOf(err);
    await reportFailure(err, argv, io);
  }
  return exitCode;
}

/**
 * Stops yargs from laying out a command's whole `--help` each time it starts that command's
 * handler (`usage.cacheHelpMessage`, kept in case a failure prints the help after the parser moved
 * on): `.fail` above throws instead, so that help is never printed, and the layout is ~10 ms of
 * every command's start-up (a width for every option). A mirror with nothing to fetch, through
 * bin/hcexport.js, alternating runs: median 172 against 183 ms (10 pairs), 198 against 208 ms (12
 * pairs). `--help` itself is unchanged. A yargs without this internal is left as it is.
 */
export function withoutHelpCache(parser: object): void {
  const internal = parser as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: unknown } } };
  const usage = internal.getInternalMethods?.().getUsageInstance?.();
  if (usage !== undefined && typeof usage.cacheHelpMessage === "function") usage.cacheHelpMessage = () => {};
}

/** Prints a failure the one way every command does: `error: …` + `fix: …`, or an `error` event with --json. */
export async function reportFailure(
  err: unknown,
  argv: readonly string[],
  io: Pick<CliIo, "stdout" | "stderr">,
): Promise<void> {
  // Loaded here, not at the top: `--version` and `--help` never need the output layer (ora).
  const [{ Output }, { redactSecrets }] = await Promise.all([import("./output.ts"), import("../core/redact.ts")]);
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
    io.stderr.write(`${redactSecrets(err.stack)}\n`);
}
