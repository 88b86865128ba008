#!/usr/bin/env node
import { InterruptedError } from "../core/errors.ts";
import { reportFailure, runCli } from "./run-cli.ts";

/** After a signal, how long a command may take to unwind (temp files, lock, state) before it is cut off. */
const UNWIND_MS = 1500;
/** After the command returned, how long anything a library left behind (a socket, a timer) may delay the exit. */
const LINGER_MS = 250;

const argv = process.argv.slice(2);
// Memory flat in the object count (issue #11): see heap-shape.ts.
if (!(argv.length === 1 && argv[0] === "--version"))
  void import("./heap-shape.ts").then((m) => m.shapeHeap(argv.find((a) => m.SHAPED_COMMANDS.has(a)) ?? argv[0]));
const io = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() };
const controller = new AbortController();
let interrupted: InterruptedError | undefined;
let cutOffTimer: NodeJS.Timeout | undefined;
let finished: number | undefined = undefined;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    // The result is out: nothing left to stop.
    if (finished !== undefined) process.exit(finished);
    if (interrupted !== undefined) {
      // A second signal: exit at once; the next run sweeps what this one could not.
      process.stderr.write(`\ninterrupted again by ${sig}: exiting at once\n`);
      process.exit(new InterruptedError(sig).exitCode);
    }
    interrupted = new InterruptedError(sig);
    // Every wait (HTTP, poll and backoff sleeps, the mirror's pool) listens to this signal and unwinds.
    controller.abort(interrupted);
    const cutOff = interrupted;
    cutOffTimer = setTimeout(() => {
      void reportFailure(cutOff, argv, io).finally(() => process.exit(cutOff.exitCode));
    }, UNWIND_MS).unref();
  });
}
const code = await runCli(argv, { ...io, signal: controller.signal });
finished = code;
clearTimeout(cutOffTimer);
process.exitCode = code;
// The result is out: nothing may keep a finished command alive (issue #10: a spinner once did).
setTimeout(() => process.exit(code), LINGER_MS).unref();
