import { readFileSync, readlinkSync } from "node:fs";
import os from "node:os";
import type { LockSelf, ProcessProbe } from "./lock-judge.ts";

/**
 * Who this process is, in the terms a lock is judged by (see lock-judge.ts), read from /proc.
 * Off Linux, or where /proc is not readable, the fields are undefined and judging falls back to
 * the pid and the heartbeat.
 */
export function selfIdentity(pid = process.pid, host = os.hostname()): LockSelf {
  return {
    pid,
    host,
    bootId: read(() => readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()),
    pidNs: read(() => readlinkSync("/proc/self/ns/pid")),
    // /proc/self is this process even when /proc was mounted for another pid namespace.
    startTime: pid === process.pid ? read(() => startTimeIn(readFileSync("/proc/self/stat", "utf8"))) : undefined,
  };
}

/** `kill(pid, 0)` (ESRCH: gone; EPERM: alive, not ours) and /proc/PID/stat, when /proc shows our pid namespace. */
export const systemProbe: ProcessProbe = {
  isAlive(pid) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EPERM";
    }
    // A zombie (exited, not yet reaped: a terminal multiplexer or a container's init that has not
    // waited for it) still answers kill(pid, 0), but holds nothing.
    if (read(() => readlinkSync("/proc/self")) !== String(process.pid)) return true;
    const state = read(() => stateIn(readFileSync(`/proc/${pid}/stat`, "utf8")));
    return state !== "Z" && state !== "X";
  },
  startTimeOf(pid) {
    // A /proc mounted for another pid namespace (unshare --pid without --mount-proc) names other processes.
    if (read(() => readlinkSync("/proc/self")) !== String(process.pid)) return undefined;
    return read(() => startTimeIn(readFileSync(`/proc/${pid}/stat`, "utf8")));
  },
};

/** Field 3 (state: R, S, D, Z for a zombie, X for dead…) of a /proc/PID/stat line. */
export function stateIn(stat: string): string | undefined {
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

/** Field 22 (starttime) of a /proc/PID/stat line; the command name (field 2) may hold spaces and parentheses. */
export function startTimeIn(stat: string): string | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const v = fields[22 - 3];
  return v !== undefined && /^\d+$/.test(v) ? v : undefined;
}

function read(fn: () => string | undefined): string | undefined {
  try {
    const v = fn();
    return v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}
