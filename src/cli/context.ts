import type { Writable } from "node:stream";
import { Output } from "./output.ts";

/** Options every command accepts (DESIGN §2). */
export interface GlobalArgs {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly verbose: boolean;
  readonly project?: string | undefined;
  readonly healthcareEndpoint?: string | undefined;
  readonly storageEndpoint?: string | undefined;
  readonly resourceManagerEndpoint?: string | undefined;
  /** One base URL for all three services, e.g. a running `hcexport emulator`. */
  readonly emulator?: string | undefined;
}

/** The process edges, injected so the whole CLI can run in-process in tests. */
export interface CliIo {
  readonly stdout: Writable & { isTTY?: boolean };
  readonly stderr: Writable & { isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Aborted on SIGINT/SIGTERM so commands can stop cleanly. */
  readonly signal: AbortSignal;
}

/** Per-invocation context handed to every command handler. */
export interface CliContext {
  readonly io: CliIo;
  readonly out: Output;
}

/** The outputs each invocation opened, so the CLI can close them whatever the command did. */
const opened = new WeakMap<CliIo, Set<Output>>();

export function createContext(args: GlobalArgs, io: CliIo): CliContext {
  const out = new Output({
    json: args.json,
    quiet: args.quiet,
    verbose: args.verbose,
    stdout: io.stdout,
    stderr: io.stderr,
  });
  let set = opened.get(io);
  if (set === undefined) opened.set(io, (set = new Set()));
  set.add(out);
  return { io, out };
}

/**
 * Stops every spinner the invocation's outputs started (marked ✖ when `failed`). Called by runCli
 * after every command, so a command that throws mid-step can never leave a spinner's timer
 * keeping the process alive.
 */
export function closeOutputs(io: CliIo, failed: boolean): void {
  for (const out of opened.get(io) ?? []) out.stopStatus(failed);
  opened.delete(io);
}
