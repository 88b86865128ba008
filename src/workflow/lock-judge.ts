/**
 * Whether a lock's holder is provably gone (pure; issue #10 finding 7). A lock records who took
 * it — pid, host name, boot id, pid-namespace identity, the process's start time — and its file's
 * mtime is a heartbeat the holder refreshes while it runs. What can be checked depends on where
 * the judge stands:
 *
 * - Same host, boot and pid namespace: the pid is checked directly. Gone, or alive with another
 *   start time (the pid was reused), means stale; our own pid with another start time means the
 *   holder was an earlier process that had our pid — not us.
 * - Same host and boot, another pid namespace, and the holder had our pid: a container restart
 *   (same hostname, new namespace, the new process gets the dead holder's pid, often 1) — stale.
 * - Anything else (another host, another boot, another namespace we cannot look into): only the
 *   heartbeat counts. Older than `staleAfterMs`: stale; fresher: live.
 */

/** Who holds a lock, as read from its file. The identity fields are absent in locks of older versions. */
export interface LockHolder {
  readonly pid: number;
  readonly host: string;
  /** /proc/sys/kernel/random/boot_id of the holder's machine. */
  readonly bootId?: string | undefined;
  /** readlink /proc/self/ns/pid of the holder, e.g. `pid:[4026531836]`. */
  readonly pidNs?: string | undefined;
  /** Field 22 of /proc/PID/stat: clock ticks after boot at which the holder started. */
  readonly startTime?: string | undefined;
}

/** The judge's own identity (the process trying to take the lock). */
export type LockSelf = LockHolder;

/** Looks at processes of the judge's own pid namespace. */
export interface ProcessProbe {
  isAlive(pid: number): boolean;
  /** The start time of `pid` (as LockHolder.startTime), or undefined when it cannot be read. */
  startTimeOf(pid: number): string | undefined;
}

export interface JudgeOptions {
  /** Milliseconds since the epoch. */
  readonly now: number;
  /** The lock file's mtime (the holder's last heartbeat), ms since the epoch. */
  readonly heartbeatMs: number;
  /** A heartbeat older than this from a holder we cannot look at means it is gone. */
  readonly staleAfterMs: number;
}

export type LockVerdict =
  { readonly stale: false; readonly reason: string } | { readonly stale: true; readonly reason: string };

/** Judges the lock held by `holder` (undefined: unreadable content, which is stale). */
export function judgeLock(
  holder: LockHolder | undefined,
  self: LockSelf,
  probe: ProcessProbe,
  o: JudgeOptions,
): LockVerdict {
  if (holder === undefined) return { stale: true, reason: "the lock file is unreadable" };
  const who = `pid ${holder.pid} on ${holder.host}`;
  const sameHost = holder.host === self.host;
  const sameBoot = sameHost && known(holder.bootId, self.bootId, true);
  const sameNs = sameBoot && known(holder.pidNs, self.pidNs, true);
  if (sameNs) {
    if (holder.pid === self.pid) {
      // This very process (a second acquisition within it) is a live holder; an earlier one with our pid is not.
      if (holder.startTime !== undefined && self.startTime !== undefined && holder.startTime === self.startTime)
        return { stale: false, reason: `${who} is this process` };
      return { stale: true, reason: `${who} had our pid, so it is no longer running` };
    }
    if (!probe.isAlive(holder.pid)) return { stale: true, reason: `${who} is not running` };
    const now = holder.startTime === undefined ? undefined : probe.startTimeOf(holder.pid);
    if (now !== undefined && now !== holder.startTime)
      return { stale: true, reason: `${who} is not running (that pid now belongs to a newer process)` };
    return { stale: false, reason: `${who} is running` };
  }
  if (sameBoot && holder.pid === self.pid && holder.startTime !== self.startTime)
    return {
      stale: true,
      reason: `${who} had our pid in another pid namespace of this machine (a restarted container)`,
    };
  const age = o.now - o.heartbeatMs;
  if (age > o.staleAfterMs)
    return {
      stale: true,
      reason: `${who}${sameHost ? "" : " (another host)"} has not refreshed the lock for ${Math.round(age / 1000)} s (more than ${Math.round(o.staleAfterMs / 1000)} s)`,
    };
  return { stale: false, reason: `${who} refreshed the lock ${Math.max(0, Math.round(age / 1000))} s ago` };
}

/** Equal when both are known; `unknownIsSame` when either is missing (locks of older versions). */
function known(a: string | undefined, b: string | undefined, unknownIsSame: boolean): boolean {
  return a === undefined || b === undefined ? unknownIsSame : a === b;
}
