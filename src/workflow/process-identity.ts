import { readFileSync, readlinkSync } from "node:fs";
import os from "node:os";
import { processAlive, procShowsOurPidNamespace, readOrUndefined as read } from "../core/process-alive.ts";
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

/** Liveness from kill(2) and /proc (see processAlive); start times from /proc/PID/stat, when /proc shows our pid namespace. */
export const systemProbe: ProcessProbe = {
  isAlive: processAlive,
  startTimeOf(pid) {
    if (!procShowsOurPidNamespace()) return undefined;
    return read(() => startTimeIn(readFileSync(`/proc/${pid}/stat`, "utf8")));
  },
};

/** Field 22 (starttime) of a /proc/PID/stat line; the command name (field 2) may hold spaces and parentheses. */
export function startTimeIn(stat: string): string | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const v = fields[22 - 3];
  return v !== undefined && /^\d+$/.test(v) ? v : undefined;
}
