/**
 * The command index: what `hcexport --help` lists, and nothing heavier.
 *
 * START-UP RULE (issue #14.5): `hcexport --version` and `--help` must not load any command's code.
 * Each entry below is a light descriptor — the command string, its one-line description and a
 * `load` that `import()`s the command's module only when that command runs (or its own `--help` is
 * asked for). So:
 *
 * - To add a command: write `src/cli/commands/NAME.ts` exporting a {@link CommandFactory} as usual
 *   (static imports there are fine: they load only when the command runs), then add ONE entry here
 *   with the same `command` and `describe` strings and `load: async () => (await import("./NAME.ts")).nameCommand`.
 * - Never import a command module statically from this file or from run-cli.ts.
 * - test/unit/cli-commands-index.test.ts checks that every entry matches its module, and
 *   test/e2e/startup.test.ts that `--version` stays fast and loads no Google SDK.
 */
import type { CommandModule } from "yargs";
import type { CliIo, GlobalArgs } from "../context.ts";

/** A command: a yargs module whose handler receives the injected process edges. */
export type CommandFactory = (io: CliIo) => CommandModule<GlobalArgs, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** What the top-level help needs to list a command, and how to load the rest. */
export interface LazyCommand {
  /** The yargs command string, positionals included — the same as the module's. */
  readonly command: string;
  /** The one-line description — the same as the module's. */
  readonly describe: string;
  /** Loads the command's module (and with it everything the command needs). */
  readonly load: () => Promise<CommandFactory>;
}

export const commands: readonly LazyCommand[] = [
  {
    command: "run [config]",
    describe: "ensure bucket → check/grant IAM → export → wait → mirror → annotations (resumable)",
    load: async () => (await import("./run.ts")).runCommand,
  },
  {
    command: "plan [config]",
    describe: "print what `run` would do, changing nothing",
    load: async () => (await import("./run.ts")).planCommand,
  },
  {
    command: "status [config]",
    describe: "show the last run: steps of every lane, operations, counters, mirror totals",
    load: async () => (await import("./status.ts")).statusCommand,
  },
  {
    command: "bucket <action>",
    describe: "bucket administration (ensure)",
    load: async () => (await import("./bucket.ts")).bucketCommand,
  },
  {
    command: "iam <action>",
    describe: "check or grant the Healthcare service agent's roles/storage.objectAdmin on a bucket",
    load: async () => (await import("./iam.ts")).iamCommand,
  },
  {
    command: "export <store> <destination>",
    describe:
      "start a DICOM store export to gs://BUCKET/PREFIX or BigQuery bq://PROJECT.DATASET.TABLE; --wait polls it to the end",
    load: async () => (await import("./export.ts")).exportCommand,
  },
  {
    command: "operations <action>",
    describe: "wait for or list Healthcare API long-running operations",
    load: async () => (await import("./operations.ts")).operationsCommand,
  },
  {
    command: "mirror <source> <dir>",
    describe: "copy gs://BUCKET/PREFIX to DIR: parallel, verified (CRC32C), atomic, incremental",
    load: async () => (await import("./mirror.ts")).mirrorCommand,
  },
  {
    command: "dicomweb <command>",
    describe: "direct DICOMweb download (QIDO-RS + WADO-RS) from a Healthcare DICOM store or any DICOMweb server",
    load: async () => (await import("./dicomweb.ts")).dicomwebCommand,
  },
  {
    command: "fhir <command>",
    describe: "read FHIR resources and their attachments (the SIIM annotations)",
    load: async () => (await import("./fhir.ts")).fhirCommand,
  },
  {
    command: "demo",
    describe: "run the whole workflow against an embedded local cloud with a SIIM-shaped dataset",
    load: async () => (await import("./demo.ts")).demoCommand,
  },
  {
    command: "emulator",
    describe: "start the local cloud (GCS JSON API, Healthcare API, Resource Manager) on loopback",
    load: async () => (await import("./emulator.ts")).emulatorCommand,
  },
  {
    command: "doctor [config]",
    describe: "check credentials, endpoints, permissions and the service agent binding; changes nothing",
    load: async () => (await import("./doctor.ts")).doctorCommand,
  },
];

/**
 * The yargs module for one entry: the builder (async — yargs awaits it) loads the command's module
 * the first time yargs selects that command, then hands over to the module's own builder and handler.
 */
export function lazyCommandModule(entry: LazyCommand, io: CliIo): ReturnType<CommandFactory> {
  let loaded: Promise<ReturnType<CommandFactory>> | undefined;
  const real = () => (loaded ??= entry.load().then((make) => make(io)));
  return {
    command: entry.command,
    describe: entry.describe,
    builder: async (y) => {
      const m = await real();
      if (typeof m.builder === "function") return (await m.builder(y)) ?? y;
      return m.builder === undefined ? y : y.options(m.builder);
    },
    handler: async (args) => {
      await (await real()).handler(args);
    },
  };
}
