import { randomBytes } from "node:crypto";
import { link, mkdir, readFile, stat, unlink, writeFile } from "node:fs/promises";
import { setTimeout as delay } from "node:timers/promises";
import os from "node:os";
import path from "node:path";
import { LockHeldError } from "../core/errors.ts";

/** Who holds a lock: written into the lock file as JSON. */
export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
  readonly command: string;
}

export interface HeldLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** Removes the lock if it is still ours. */
  release(): Promise<void>;
}

export interface LockOptions {
  readonly command?: string;
  readonly pid?: number;
  readonly host?: string;
  readonly now?: () => number;
  /** Whether a process is alive; injected for tests. */
  readonly isAlive?: (pid: number) => boolean;
}

/** `kill(pid, 0)`: ESRCH means gone; EPERM means alive but not ours. */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the lock at `lockPath` (one per destination/state directory) or throws LockHeldError
 * (exit 6) naming the holder. The lock file is created with link(2), which fails if anyone else
 * got there first. A lock left by a dead process on this host is removed under a takeover mutex
 * (see breakStale) and the race to create it starts again. Locks from another host are never
 * broken automatically.
 */
export async function acquireLock(lockPath: string, options: LockOptions = {}): Promise<HeldLock> {
  const owner: LockOwner = {
    pid: options.pid ?? process.pid,
    host: options.host ?? os.hostname(),
    startedAt: new Date((options.now ?? Date.now)()).toISOString(),
    command: options.command ?? process.argv.slice(2).join(" "),
  };
  const isAlive = options.isAlive ?? processIsAlive;
  await mkdir(path.dirname(lockPath), { recursive: true });
  const mine = `${lockPath}.${randomBytes(6).toString("hex")}.new`;
  await writeFile(mine, `${JSON.stringify(owner)}\n`, { flag: "wx" });
  try {
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await link(mine, lockPath);
        return held(lockPath, owner);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      }
      const text = await readFile(lockPath, "utf8").catch(() => undefined);
      if (text === undefined) continue; // released meanwhile: try again
      const holder = parseOwner(text);
      if (holder !== undefined && (holder.host !== owner.host || isAlive(holder.pid))) throw lockHeld(lockPath, holder);
      await breakStale(lockPath, text, mine);
    }
    throw new LockHeldError(`could not take the lock ${lockPath} after several attempts`, {
      hint: "another run is starting at the same moment; try again",
    });
  } finally {
    await unlink(mine).catch(() => {});
  }
}

/**
 * Removes a stale lock, but only while holding `lockPath.takeover` (created with link(2), so one
 * contender at a time) and only if the lock still holds exactly the stale content we judged: a
 * fresh lock taken meanwhile by someone else is never removed. A takeover file left by a process
 * that died inside this short critical section is cleared after 10 s.
 */
async function breakStale(lockPath: string, staleText: string, mine: string): Promise<void> {
  const takeover = `${lockPath}.takeover`;
  try {
    await link(mine, takeover);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const st = await stat(takeover).catch(() => undefined);
    if (st !== undefined && Date.now() - st.mtimeMs > 10_000) await unlink(takeover).catch(() => {});
    await delay(5 + Math.random() * 20);
    return;
  }
  try {
    const current = await readFile(lockPath, "utf8").catch(() => undefined);
    if (current === staleText) await unlink(lockPath).catch(() => {});
  } finally {
    await unlink(takeover).catch(() => {});
  }
}

function held(lockPath: string, owner: LockOwner): HeldLock {
  return {
    path: lockPath,
    owner,
    async release() {
      const text = await readFile(lockPath, "utf8").catch(() => undefined);
      const current = text === undefined ? undefined : parseOwner(text);
      if (
        current !== undefined &&
        current.pid === owner.pid &&
        current.host === owner.host &&
        current.startedAt === owner.startedAt
      ) {
        await unlink(lockPath).catch(() => {});
      }
    },
  };
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockOwner>;
    if (typeof v.pid === "number" && typeof v.host === "string" && typeof v.startedAt === "string") {
      return {
        pid: v.pid,
        host: v.host,
        startedAt: v.startedAt,
        command: typeof v.command === "string" ? v.command : "",
      };
    }
  } catch {
    // unreadable: treated as stale
  }
  return undefined;
}

function lockHeld(lockPath: string, holder: LockOwner): LockHeldError {
  return new LockHeldError(
    `another hcexport run holds ${lockPath}: pid ${holder.pid} on ${holder.host}, started ${holder.startedAt}${holder.command ? ` (${holder.command})` : ""}`,
    {
      hint:
        holder.host === os.hostname()
          ? "wait for it to finish (it exits on its own), or stop that process"
          : `the holder runs on another host; if it is certainly gone, delete ${lockPath}`,
    },
  );
}
