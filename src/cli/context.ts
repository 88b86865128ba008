import type { Writable } from "node:stream";
import { registerOutput } from "./open-outputs.ts";
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
  /** One base URL for all three services, e.g. a running `hcexport emulator`: never any credentials. */
  readonly emulator?: string | undefined;
  /** Send credentials to a configured plain-http, non-loopback endpoint anyway (with a warning). */
  readonly allowInsecureAuth?: boolean | undefined;
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

export function createContext(args: GlobalArgs, io: CliIo): CliContext {
  const out = new Output({
    json: args.json,
    quiet: args.quiet,
    verbose: args.verbose,
    stdout: io.stdout,
    stderr: io.stderr,
  });
  registerOutput(io, out);
  return { io, out };
}
