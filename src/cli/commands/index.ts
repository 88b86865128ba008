import type { CommandModule } from "yargs";
import type { CliIo, GlobalArgs } from "../context.ts";
import { demoCommand } from "./demo.ts";
import { emulatorCommand } from "./emulator.ts";
import { mirrorCommand } from "./mirror.ts";
import { planCommand, runCommand } from "./run.ts";
import { statusCommand } from "./status.ts";
import { bucketCommand } from "./bucket.ts";
import { iamCommand } from "./iam.ts";
import { exportCommand } from "./export.ts";
import { operationsCommand } from "./operations.ts";
import { doctorCommand } from "./doctor.ts";
import { dicomwebCommand } from "./dicomweb.ts";
import { fhirCommand } from "./fhir.ts";

/**
 * A command: a yargs module whose handler receives the injected process edges.
 * Register new commands in `commands` below.
 */
export type CommandFactory = (io: CliIo) => CommandModule<GlobalArgs, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const commands: CommandFactory[] = [
  runCommand,
  planCommand,
  statusCommand,
  bucketCommand,
  iamCommand,
  exportCommand,
  operationsCommand,
  mirrorCommand,
  dicomwebCommand,
  fhirCommand,
  demoCommand,
  emulatorCommand,
  doctorCommand,
];
