import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { requireBuiltCli } from "./chaos.ts";

/**
 * The built CLI in a real terminal of a real size (issue #10: the suite ran without a TTY, and a
 * 0-column pty disables the spinner, so a spinner that never stopped went unnoticed). Each session
 * is a private tmux server (Debian's `tmux`; CI installs it) with one 120×30 pane running
 * `node bin/hcexport.js ARGS…` — the installed command, as a user starts it — exec'd, so the pane's
 * process is the CLI itself (the launcher's one-arena restart for long commands is an execve in that
 * same process: signals and Ctrl-C reach the CLI, as they would without it).
 *
 *   const t = await startPty(["run", cfg, "--emulator", url], { cwd });
 *   await t.waitFor(/iam:/);              // the screen shows it
 *   await t.keys("C-c");                  // Ctrl-C as a user types it (SIGINT to the foreground group)
 *   t.signal("SIGTERM");                  // or a signal to the CLI's pid, as a scheduler sends it
 *   const { code, ms, screen } = await t.exited();
 *   await t.close();                      // always (kills the tmux server and anything left)
 */
export interface PtySession {
  /** The CLI's pid. */
  readonly pid: number;
  /** performance.now() when the CLI was started. */
  readonly startedAt: number;
  /** tmux key names (`C-c`, `Enter`) or literal text, as `tmux send-keys` takes them. */
  keys(...keys: string[]): Promise<void>;
  /** Sends a signal to the CLI's pid (not its process group). */
  signal(sig: NodeJS.Signals): void;
  /** The visible screen now (the last frame), trailing blank lines dropped; `history` adds the scrollback. */
  screen(o?: { readonly history?: boolean }): Promise<string>;
  /** The terminal's title as the CLI left it (an unescaped OSC 0 from a server would change it). */
  title(): Promise<string>;
  /** Polls the screen (with history) until it matches; returns it, or throws with the screen after `timeoutMs`. */
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<string>;
  /** Waits for the CLI to end: its exit code (128+N when a signal killed it), when, and the last screen. */
  exited(timeoutMs?: number): Promise<PtyExit>;
  close(): Promise<void>;
}

export interface PtyExit {
  readonly code: number;
  /** Milliseconds from the start to the moment the exit was seen (polled every ~20 ms). */
  readonly ms: number;
  /** performance.now() of that moment, to compare with a waitFor's. */
  readonly at: number;
  /** The last frame: the visible screen at exit. */
  readonly screen: string;
  /** Everything printed, scrollback included. */
  readonly history: string;
}

export interface PtyOptions {
  readonly cwd: string;
  /** Added to (or, with a value of undefined, removed from) this process's environment. */
  readonly env?: Record<string, string | undefined>;
  readonly cols?: number;
  readonly rows?: number;
}

const run = promisify(execFile);
let sessions = 0;

/** Why pty tests cannot run here (no tmux), or false. Callers skip loudly, and fail when CI is set. */
export function ptySkip(suite: string): string | false {
  const found = ["/usr/bin/tmux", "/usr/local/bin/tmux"].some((p) => existsSync(p));
  if (found) return false;
  const reason = "tmux is not installed (apt-get install tmux)";
  if (process.env["CI"] !== undefined && process.env["CI"] !== "")
    throw new Error(`${suite}: ${reason}, and CI is set`);
  process.stderr.write(`\n!!! ${suite}: SKIPPED: ${reason}\n`);
  return reason;
}

/** Starts `node bin/hcexport.js ...args` in a fresh cols×rows (default 120×30) terminal. */
export async function startPty(args: readonly string[], o: PtyOptions): Promise<PtySession> {
  requireBuiltCli();
  const cli = path.resolve("bin/hcexport.js");
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-pty-"));
  const socket = `hcx-pty-${process.pid}-${++sessions}`;
  const conf = path.join(dir, "tmux.conf");
  const pidFile = path.join(dir, "pid");
  // No status bar (the pane is the whole terminal); keep the pane after exit to read its status.
  await writeFile(conf, "set -g status off\nset -g remain-on-exit on\nset -g history-limit 10000\n");
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm-256color" };
  delete env["TMUX"];
  for (const [k, v] of Object.entries(o.env ?? {})) if (v === undefined) delete env[k];
  for (const [k, v] of Object.entries(o.env ?? {})) if (v !== undefined) env[k] = v;
  const tmux = (...a: string[]) => run("tmux", ["-L", socket, "-f", conf, ...a], { env, cwd: o.cwd });
  const script = 'echo $$ > "$0"; exec "$@"';
  const rows = o.rows ?? 30;
  const startedAt = performance.now();
  await tmux(
    "new-session",
    "-d",
    "-s",
    "main",
    "-x",
    String(o.cols ?? 120),
    "-y",
    String(rows),
    "-c",
    o.cwd,
    "sh",
    "-c",
    script,
    pidFile,
    process.execPath,
    cli,
    ...args,
  );
  let pid = 0;
  for (let i = 0; i < 500 && pid === 0; i++) {
    pid = Number((await readFile(pidFile, "utf8").catch(() => "")).trim()) || 0;
    if (pid === 0) await sleep(10);
  }
  if (pid === 0) throw new Error("the pty session did not start");

  const screen = async (so: { history?: boolean } = {}) => {
    const { stdout } = await tmux("capture-pane", "-p", "-t", "main", ...(so.history === true ? ["-S", "-"] : []));
    return stdout.replace(/\s+$/, "");
  };
  const dead = async (): Promise<number | undefined> => {
    const fmt = "#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}";
    const [isDead, status, sig] = (await tmux("display-message", "-p", "-t", "main", fmt)).stdout.trim().split("|");
    if (isDead === "1" && status !== undefined && status !== "") return Number(status);
    if (isDead === "1" && sig !== undefined && sig !== "") return 128 + Number(sig);
    // tmux 3.3a sometimes leaves its child a zombie for seconds (measured): read the status the
    // kernel keeps for it (proc(5), field 52: the waitpid status) instead of waiting for tmux.
    return zombieStatus(pid);
  };
  return {
    pid,
    startedAt,
    async keys(...keys) {
      await tmux("send-keys", "-t", "main", ...keys);
    },
    signal(sig) {
      process.kill(pid, sig);
    },
    screen,
    async title() {
      return (await tmux("display-message", "-p", "-t", "main", "#{pane_title}")).stdout.trim();
    },
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const text = await screen({ history: true });
        if (typeof pattern === "string" ? text.includes(pattern) : pattern.test(text)) return text;
        if (performance.now() > deadline)
          throw new Error(`the screen never showed ${String(pattern)} in ${timeoutMs} ms; it shows:\n${text}`);
        await sleep(20);
      }
    },
    async exited(timeoutMs = 20_000) {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const code = await dead();
        const at = performance.now();
        if (code !== undefined) {
          // tmux scrolls the screen up one line and writes "Pane is dead …" on the last row when the
          // pane's process ends: the CLI's last frame is the `rows` lines before that message.
          const { stdout } = await tmux("capture-pane", "-p", "-t", "main", "-S", "-");
          const lines = stdout.replace(/\n$/, "").split("\n");
          const deadAt = lines.findLastIndex((l) => l.startsWith("Pane is dead"));
          const before = deadAt >= 0 ? lines.slice(0, deadAt) : lines;
          const trim = (l: string[]) => l.join("\n").replace(/\s+$/, "");
          return { code, ms: at - startedAt, at, screen: trim(before.slice(-rows)), history: trim(before) };
        }
        if (at > deadline) throw new Error(`still running after ${timeoutMs} ms; the screen:\n${await screen()}`);
        await sleep(20);
      }
    },
    async close() {
      await tmux("kill-server").catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The exit code (128+N for a signal) of `pid` if it is a zombie, else undefined. */
async function zombieStatus(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return undefined;
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  if (fields[0] !== "Z") return undefined;
  const wait = Number(fields[49]);
  return (wait & 0x7f) === 0 ? (wait >> 8) & 0xff : 128 + (wait & 0x7f);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
