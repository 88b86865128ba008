import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { runCli } from "../../src/cli/run-cli.ts";

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in-process (as `hcexport argv…`) and captures what it prints. */
export async function cliIn(
  argv: readonly string[],
  o: { readonly cwd: string; readonly env?: NodeJS.ProcessEnv; readonly signal?: AbortSignal },
): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const out = new PassThrough().on("data", (d) => (stdout += String(d)));
  const err = new PassThrough().on("data", (d) => (stderr += String(d)));
  const code = await runCli([...argv], {
    stdout: out,
    stderr: err,
    env: o.env ?? {},
    cwd: o.cwd,
    signal: o.signal ?? new AbortController().signal,
  });
  return { code, stdout, stderr };
}

/**
 * Why tmpfs mounts cannot be used here (not root, or no mount(2) in this container), or false
 * when they can. A suite that needs them skips with the reason printed loudly.
 */
export function mountSkip(suite: string): string | false {
  const reason = (() => {
    if (process.getuid?.() !== 0) return "needs root to mount a tmpfs";
    const probe = path.join(os.tmpdir(), `hcx-mount-probe-${process.pid}-${suite}`);
    try {
      execFileSync("mkdir", ["-p", probe]);
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { stdio: "ignore" });
      execFileSync("umount", [probe]);
      return false;
    } catch {
      return "mount(2) is not permitted here (no CAP_SYS_ADMIN)";
    } finally {
      execFileSync("rm", ["-rf", probe]);
    }
  })();
  if (reason !== false) process.stderr.write(`\n!!! ${suite}: SKIPPED: ${reason}\n`);
  return reason;
}
