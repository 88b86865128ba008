#!/usr/bin/env node
import { runCli } from "./run-cli.ts";

const controller = new AbortController();
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    controller.abort(new Error(`interrupted by ${sig}`));
    // A second signal exits at once.
    process.once(sig, () => process.exit(130));
  });
}
process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
});
