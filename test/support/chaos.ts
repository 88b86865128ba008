import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import path from "node:path";

/**
 * Shared pieces of the chaos suites (issue #6): a seeded PRNG, a seed taken from the environment
 * (so a failing run can be replayed), a spawner for the built CLI that hands each stdout line to
 * a callback, and a recursive file lister.
 */

/** mulberry32, the emulator's own fault PRNG: small, fast and reproducible. */
export { seededRandom as prng } from "../../src/emulator/faults.ts";

/** `HCX_<NAME>_SEED` if set (to replay a failure), else a fresh seed; always logged by the caller. */
export function seedFor(name: string): number {
  const fromEnv = process.env[`HCX_${name.toUpperCase()}_SEED`];
  if (fromEnv !== undefined && fromEnv !== "") return Number(fromEnv) >>> 0;
  return (Date.now() ^ (process.pid << 8)) >>> 0;
}

/** The built CLI (`npm run build`), as CI and users run it. */
export const BUILT_CLI = path.resolve("dist/cli/main.js");

export function requireBuiltCli(): string {
  if (!existsSync(BUILT_CLI)) throw new Error(`${BUILT_CLI} is missing: run 'npm run build' first`);
  return BUILT_CLI;
}

export interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Spawns `node CLI args…`; `onLine` sees each stdout line as it arrives (and may kill the child). */
export function spawnCli(
  cli: string,
  args: readonly string[],
  opts: {
    cwd: string;
    env?: NodeJS.ProcessEnv;
    onLine?: (line: string, child: ChildProcess) => void;
    onSpawn?: (child: ChildProcess) => void;
  },
): Promise<Ran> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let pending = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      pending += chunk;
      let i: number;
      while ((i = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, i);
        pending = pending.slice(i + 1);
        opts.onLine?.(line, child);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - started }));
    opts.onSpawn?.(child);
  });
}

/** Every non-directory entry under `dir`, relative, sorted; [] when `dir` does not exist. */
export async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch((e: NodeJS.ErrnoException) =>
    e.code === "ENOENT" ? [] : Promise.reject(e),
  );
  return entries
    .filter((e) => !e.isDirectory())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

/** A stack trace printed by Node or by us ("    at fn (file:line:col)"). */
export const STACK_TRACE = /^\s+at .+(:\d+:\d+\)?|\(node:)/m;
