import { readFileSync, readlinkSync } from "node:fs";

/**
 * Whether process `pid` of this pid namespace still runs: `kill(pid, 0)` (ESRCH: gone; EPERM:
 * alive, not ours), and on Linux /proc/PID/stat, since a zombie (exited, not yet reaped: a terminal
 * multiplexer or a container's init that has not waited for it) still answers kill(pid, 0) but
 * holds and writes nothing. Where /proc shows another pid namespace, a live answer stands.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  if (!procShowsOurPidNamespace()) return true;
  const state = readOrUndefined(() => stateIn(readFileSync(`/proc/${pid}/stat`, "utf8")));
  return state !== "Z" && state !== "X";
}

/**
 * Whether /proc describes this process's pid namespace: /proc/self is this process even when /proc
 * was mounted for another one (unshare --pid without --mount-proc), whose pids name other processes.
 */
export function procShowsOurPidNamespace(): boolean {
  return readOrUndefined(() => readlinkSync("/proc/self")) === String(process.pid);
}

/** Field 3 (state: R, S, D, Z for a zombie, X for dead…) of a /proc/PID/stat line. */
export function stateIn(stat: string): string | undefined {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

/** `fn()`, or undefined when it throws or answers the empty string. */
export function readOrUndefined(fn: () => string | undefined): string | undefined {
  try {
    const v = fn();
    return v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}
