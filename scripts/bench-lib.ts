/**
 * Pieces shared by the benchmark scripts: the local cloud in its own process, timing a command
 * with its peak RSS, medians, and start-up figures.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
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
  /** CPU seconds of the command and its children, user and system (GNU time's %U, %S). */
  readonly cpu?: { readonly user: number; readonly sys: number };
  readonly stdout: string;
}

/** CPU seconds (user + system) a live process has used so far, from /proc/PID/stat; undefined elsewhere. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime (fields 14, 15) in clock ticks (USER_HZ 100)
  } catch {
    return undefined;
  }
}

/**
 * Flushes every file system's dirty pages before a timed run (untimed), so no tool waits on the
 * writeback of the run before it (a durable tool's barrier would otherwise pay for its predecessor).
 */
export function settleDisk(): void {
  spawnSync("sync", { stdio: "ignore" });
}

/**
 * Trees of finished runs, removed at the end of the bench rather than between runs: on ext4
 * without a journal (these machines), the inode allocator skips inodes deleted in the last 30 s
 * (`recently_deleted`), so right after an `rm -rf` of 30,000 inodes every create costs ~150 µs and
 * the next tool's cold copy pays for the last one's removal. `room` removes them early when the
 * disk would fill.
 */
export class Trash {
  readonly #dirs: string[] = [];
  discard(dir: string): void {
    this.#dirs.push(dir);
  }
  /** Before a run writing `bytes` under `dir`: empties the trash if the file system has less than twice that free. */
  async room(dir: string, bytes: number): Promise<void> {
    const st = statfsSync(path.dirname(dir));
    if (st.bavail * st.bsize >= 2 * bytes + 2 ** 30) return;
    await this.empty();
    settleDisk();
    await new Promise((r) => setTimeout(r, 30_000)); // past ext4's recently_deleted window
  }
  async empty(): Promise<void> {
    for (const d of this.#dirs.splice(0)) await rm(d, { recursive: true, force: true });
  }
}

/**
 * What the disk alone needs to make `bytes` durable: written in 8 MiB chunks to a new file under
 * `dir`, then one fdatasync (what `dd bs=8M conv=fdatasync` does). No tool that makes the same
 * bytes durable can finish sooner.
 */
export function diskFloorSeconds(dir: string, bytes: number): number {
  settleDisk();
  const file = path.join(dir, ".bench-disk-floor");
  const chunk = Buffer.alloc(8 * 2 ** 20, 0xa5);
  const t = performance.now();
  const fd = openSync(file, "w");
  try {
    for (let left = bytes; left > 0; left -= chunk.byteLength)
      writeSync(fd, chunk, 0, Math.min(left, chunk.byteLength));
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const seconds = (performance.now() - t) / 1000;
  unlinkSync(file);
  return seconds;
}

/**
 * What the disk alone needs to make `n` files of `size` bytes durable, in the SIIM layout (a study
 * and a series directory per file, under `dir`): each created and written with synchronous calls
 * on one thread, then one `sync -f` of the file system. No network, no hashing: the floor of a
 * durable cold copy of the same files on this disk.
 */
export function diskFloorFilesSeconds(dir: string, n: number, size: number): number {
  settleDisk();
  const chunk = Buffer.alloc(size, 0x5a);
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const d = path.join(dir, `study-${i}`, `series-${i}`);
    mkdirSync(d, { recursive: true });
    const fd = openSync(path.join(d, `${i}.dcm`), "wx");
    try {
      writeSync(fd, chunk);
    } finally {
      closeSync(fd);
    }
  }
  spawnSync("sync", ["-f", dir], { stdio: "ignore" });
  return (performance.now() - t) / 1000;
}

/** Runs `cmd args…` to its end; wall seconds, peak RSS and CPU time. */
export async function measure(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Measured> {
  const gnuTime = existsSync("/usr/bin/time");
  const t = performance.now();
  const { stdout, stderr } = await exec(
    gnuTime ? "/usr/bin/time" : cmd,
    gnuTime ? ["-f", "MAXRSS_KB=%M CPU=%U,%S", cmd, ...args] : [...args],
    { env, maxBuffer: 512 * 1024 * 1024, timeout: 3_600_000 },
  );
  const seconds = (performance.now() - t) / 1000;
  const m = /MAXRSS_KB=(\d+) CPU=([\d.]+),([\d.]+)\s*$/.exec(stderr);
  return {
    seconds,
    stdout,
    ...(m === null ? {} : { rssMiB: Number(m[1]) / 1024, cpu: { user: Number(m[2]), sys: Number(m[3]) } }),
  };
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
