import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import path from "node:path";
import { LockHeldError } from "../core/errors.ts";
import { judgeLock, type LockHolder, type LockSelf, type ProcessProbe } from "./lock-judge.ts";
import { selfIdentity, systemProbe } from "./process-identity.ts";

/** Who holds a lock: written into the lock file as JSON. */
export interface LockOwner extends LockHolder {
  readonly startedAt: string;
  readonly command: string;
  /** Random per acquisition: tells this lock from a later one of the same process. */
  readonly token?: string;
}

export interface HeldLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** Set when a stale lock was taken over: whose, and why it was judged gone. */
  readonly tookOver: string | undefined;
  /**
   * Aborted (with a LockHeldError, exit 6) when a heartbeat finds the lock is no longer ours: another
   * run judged it stale (this process was frozen longer than the bound) and took it over. The run
   * should stop, so two runs never write the same state.
   */
  readonly lost: AbortSignal;
  /** Stops the heartbeat and removes the lock if it is still ours. */
  release(): Promise<void>;
}

/** A heartbeat older than this (2 min) from a holder we cannot look at means it is gone. */
export const DEFAULT_STALE_AFTER_MS = 120_000;
/** How often a holder refreshes its heartbeat (the lock file's mtime), at most. */
export const HEARTBEAT_MS = 10_000;

export interface LockOptions {
  readonly command?: string;
  readonly pid?: number;
  readonly host?: string;
  readonly now?: () => number;
  /** Default DEFAULT_STALE_AFTER_MS; the heartbeat runs at a quarter of it, at most every HEARTBEAT_MS. */
  readonly staleAfterMs?: number;
  /** Who we are (default: read from /proc); injected for tests. */
  readonly self?: LockSelf;
  /** How processes of our pid namespace are looked at; injected for tests. */
  readonly probe?: ProcessProbe;
  /** Whether a process is alive (shorthand for a probe without start times); injected for tests. */
  readonly isAlive?: (pid: number) => boolean;
}

/** `kill(pid, 0)`: ESRCH means gone; EPERM means alive but not ours. */
export function processIsAlive(pid: number): boolean {
  return systemProbe.isAlive(pid);
}

/**
 * Takes the lock at `lockPath` (one per destination/state directory) or throws LockHeldError
 * (exit 6) naming the live holder. The lock file is created with link(2), which fails if anyone
 * else got there first. A lock whose holder is provably gone (see judgeLock: a dead or reused pid
 * on this host and namespace, our own pid but not us, a heartbeat older than `staleAfterMs`) is
 * removed under a takeover mutex (see breakStale) and the race to create it starts again. While
 * held, the lock file's mtime is refreshed as a heartbeat.
 */
export async function acquireLock(lockPath: string, options: LockOptions = {}): Promise<HeldLock> {
  const now = options.now ?? Date.now;
  const base = options.self ?? selfIdentity(options.pid ?? process.pid, options.host);
  const self: LockSelf = {
    ...base,
    ...(options.pid === undefined ? {} : { pid: options.pid }),
    ...(options.host === undefined ? {} : { host: options.host }),
  };
  const owner: LockOwner = {
    ...self,
    startedAt: new Date(now()).toISOString(),
    command: options.command ?? process.argv.slice(2).join(" "),
    token: randomBytes(8).toString("hex"),
  };
  const probe: ProcessProbe =
    options.probe ??
    (options.isAlive === undefined ? systemProbe : { isAlive: options.isAlive, startTimeOf: () => undefined });
  const staleAfterMs = options.staleAfterMs ?? DEFAULT_STALE_AFTER_MS;
  const text = `${JSON.stringify(owner)}\n`;
  await mkdir(path.dirname(lockPath), { recursive: true });
  const mine = `${lockPath}.${randomBytes(6).toString("hex")}.new`;
  await writeFile(mine, text, { flag: "wx" });
  let tookOver: string | undefined;
  try {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await link(mine, lockPath);
        return held(lockPath, owner, text, tookOver, Math.min(HEARTBEAT_MS, staleAfterMs / 4));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const seen = await observe(lockPath);
      if (seen === undefined) continue; // released meanwhile: try again
      const holder = parseOwner(seen.text);
      const judge = async (o: { text: string; mtimeMs: number }) =>
        judgeLock(parseOwner(o.text), self, probe, { now: now(), heartbeatMs: o.mtimeMs, staleAfterMs });
      const verdict = await judge(seen);
      if (!verdict.stale) throw lockHeld(lockPath, holder!, verdict.reason, self.host, staleAfterMs);
      if (await breakStale(lockPath, mine, seen, judge)) tookOver = verdict.reason;
    }
    throw new LockHeldError(`could not take the lock ${lockPath} after several attempts`, {
      hint: "another run is starting at the same moment; try again",
    });
  } finally {
    await unlink(mine).catch(() => {});
  }
}

/** The lock file's content and mtime, or undefined when there is none. */
async function observe(lockPath: string): Promise<{ text: string; mtimeMs: number } | undefined> {
  const st = await stat(lockPath).catch(() => undefined);
  const text = await readFile(lockPath, "utf8").catch(() => undefined);
  return st === undefined || text === undefined ? undefined : { text, mtimeMs: st.mtimeMs };
}

/**
 * Removes a stale lock, but only while holding `lockPath.takeover` (created with link(2), so one
 * contender at a time) and only if, read again under that mutex, the lock holds exactly the content
 * we judged and is still judged stale (a heartbeat in between makes it live): a fresh lock taken
 * meanwhile by someone else is never removed. A takeover file left by a process that died inside
 * this short critical section is cleared after 10 s. Returns whether it removed the lock.
 */
async function breakStale(
  lockPath: string,
  mine: string,
  seen: { text: string },
  judge: (o: { text: string; mtimeMs: number }) => Promise<{ stale: boolean }>,
): Promise<boolean> {
  const takeover = `${lockPath}.takeover`;
  try {
    await link(mine, takeover);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const st = await stat(takeover).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > 10_000) await unlink(takeover).catch(() => {});
    await delay(5 + Math.random() * 20);
    return false;
  }
  try {
    const current = await observe(lockPath);
    if (current === undefined || current.text !== seen.text || !(await judge(current)).stale) return false;
    await unlink(lockPath).catch(() => {});
    return true;
  } finally {
    await unlink(takeover).catch(() => {});
  }
}

function held(
  lockPath: string,
  owner: LockOwner,
  text: string,
  tookOver: string | undefined,
  beatMs: number,
): HeldLock {
  const ours = async () => (await readFile(lockPath, "utf8").catch(() => undefined)) === text;
  const lost = new AbortController();
  // The heartbeat: the lock file's mtime, refreshed while the lock is still ours. Unref'd: it never keeps a process alive.
  const timer = setInterval(() => {
    void (async () => {
      if (!(await ours())) {
        clearInterval(timer);
        lost.abort(
          new LockHeldError(`the lock ${lockPath} was taken over by another run while this one held it`, {
            hint: "this process was stopped or frozen longer than the lock's stale bound (--lock-stale-after); the other run carries on",
          }),
        );
        return;
      }
      const t = new Date();
      await utimes(lockPath, t, t).catch(() => {});
    })();
  }, beatMs);
  timer.unref();
  return {
    path: lockPath,
    owner,
    tookOver,
    lost: lost.signal,
    async release() {
      clearInterval(timer);
      if (await ours()) await unlink(lockPath).catch(() => {});
    },
  };
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as Partial<Record<keyof LockOwner, unknown>>;
    if (typeof v.pid === "number" && typeof v.host === "string" && typeof v.startedAt === "string") {
      const str = (x: unknown) => (typeof x === "string" ? x : undefined);
      return {
        pid: v.pid,
        host: v.host,
        startedAt: v.startedAt,
        command: str(v.command) ?? "",
        bootId: str(v.bootId),
        pidNs: str(v.pidNs),
        startTime: str(v.startTime),
        token: str(v.token),
      };
    }
  } catch {
    // unreadable: treated as stale
  }
  return undefined;
}

function lockHeld(lockPath: string, holder: LockOwner, why: string, host: string, staleAfterMs: number): LockHeldError {
  return new LockHeldError(
    `another hcexport run holds ${lockPath}: pid ${holder.pid} on ${holder.host}, started ${holder.startedAt}${holder.command ? ` (${holder.command})` : ""}; ${why}`,
    {
      hint:
        holder.host === host
          ? "wait for it to finish (it exits on its own), or stop that process"
          : `the holder runs elsewhere; if it is gone, its lock is taken over once its heartbeat is ${Math.round(staleAfterMs / 1000)} s old`,
    },
  );
}
