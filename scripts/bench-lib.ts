/**
 * Pieces shared by the benchmark scripts: the local cloud in its own process, timing a command
 * with its peak RSS, medians, and start-up figures.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";

const exec = promisify(execFile);

export interface Server {
  readonly url: string;
  /** With --tls: the CA file clients must trust. */
  readonly ca?: string;
  readonly child: ChildProcess;
}

/** Starts scripts/bench-server.ts with `args`; resolves when it prints its URL (and CA). */
export async function startServer(args: readonly string[]): Promise<Server> {
  const child = spawn(process.execPath, ["scripts/bench-server.ts", ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const tls = args.includes("--tls");
  let out = "";
  child.stdout!.setEncoding("utf8");
  return new Promise<Server>((resolve, reject) => {
    child.stdout!.on("data", (d: string) => {
      out += d;
      const url = /listening on (\S+)/.exec(out)?.[1];
      const ca = /ca certificate (\S+)/.exec(out)?.[1];
      if (url !== undefined && (!tls || ca !== undefined)) resolve({ url, child, ...(ca === undefined ? {} : { ca }) });
    });
    child.once("exit", (code) => reject(new Error(`bench server exited ${code}`)));
  });
}

export async function stopServer(s: Server): Promise<void> {
  s.child.kill("SIGTERM");
  await new Promise((r) => s.child.once("exit", r));
}

export interface Measured {
  readonly seconds: number;
  /** Peak resident set size of the command (GNU time's %M), when /usr/bin/time is there. */
  readonly rssMiB?: number;
  readonly stdout: string;
}

/** Runs `cmd args…` to its end; wall seconds and peak RSS. */
export async function measure(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Measured> {
  const gnuTime = existsSync("/usr/bin/time");
  const t = performance.now();
  const { stdout, stderr } = await exec(
    gnuTime ? "/usr/bin/time" : cmd,
    gnuTime ? ["-f", "MAXRSS_KB=%M", cmd, ...args] : [...args],
    { env, maxBuffer: 512 * 1024 * 1024, timeout: 3_600_000 },
  );
  const seconds = (performance.now() - t) / 1000;
  const kb = /MAXRSS_KB=(\d+)\s*$/.exec(stderr)?.[1];
  return { seconds, stdout, ...(kb === undefined ? {} : { rssMiB: Number(kb) / 1024 }) };
}

export const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export interface Startup {
  readonly runs: number;
  /** Median wall ms of `node -e 0`, `hcexport --version`, `hcexport --help` (the installed launcher). */
  readonly nodeMs: number;
  readonly versionMs: number;
  readonly helpMs: number;
}

/** Start-up wall time (issue #14.5): medians of `runs` interleaved runs after a warm-up. */
export function measureStartup(launcher: string, runs = 20): Startup {
  const cases = [
    ["-e", "0"],
    [launcher, "--version"],
    [launcher, "--help"],
  ];
  const times: number[][] = [[], [], []];
  const once = (args: string[]) => {
    const t = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: "ignore" });
    if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${r.status}`);
    return performance.now() - t;
  };
  for (const c of cases) once(c);
  for (let i = 0; i < runs; i++) cases.forEach((c, k) => times[k]!.push(once(c)));
  return { runs, nodeMs: median(times[0]!), versionMs: median(times[1]!), helpMs: median(times[2]!) };
}
