import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { requireBuiltCli } from "../support/chaos.ts";
import { demoConfig } from "../support/pty-fixtures.ts";

/**
 * Issue #10, finding 7: a stale lock blocked every later run with exit 6 for good. Two `run`s on
 * one state directory, each in its own pid and UTS namespace (`unshare --pid --fork --uts`, as
 * root): (a) a container restart — same hostname, new pid namespace, the new process has the dead
 * holder's pid 1; (b) a CronJob's next pod — another hostname — takes over once the dead holder's
 * heartbeat is older than the bound, while a live holder's fresh heartbeat still yields exit 6.
 */
const skip = (() => {
  const why =
    process.getuid?.() !== 0
      ? "needs root for unshare --pid --uts"
      : (() => {
          try {
            execFileSync("unshare", ["--pid", "--fork", "--uts", "true"], { stdio: "ignore" });
            return false;
          } catch {
            return "unshare --pid --fork --uts is not permitted here";
          }
        })();
  if (why === false) return false;
  if (process.env["CI"] !== undefined && process.env["CI"] !== "") throw new Error(`lock-namespaces: ${why}`);
  process.stderr.write(`\n!!! lock-namespaces: SKIPPED: ${why}\n`);
  return why;
})();

interface Ran {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** `hcexport ARGS` as pid 1 of a new pid namespace with hostname `host`; `onLine` sees stdout lines. */
function inNamespace(
  host: string,
  args: readonly string[],
  cwd: string,
  onLine?: (line: string) => void,
): { child: ChildProcess; done: Promise<Ran> } {
  const script = 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"';
  // --kill-child: a SIGKILL to unshare takes its child (the namespace's init, hence all of it) along.
  const child = spawn(
    "unshare",
    [
      "--pid",
      "--fork",
      "--uts",
      "--kill-child",
      "sh",
      "-c",
      script,
      host,
      process.execPath,
      requireBuiltCli(),
      ...args,
    ],
    { cwd, stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  let pending = "";
  child.stdout!.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
    pending += c;
    for (let i = pending.indexOf("\n"); i >= 0; i = pending.indexOf("\n")) {
      onLine?.(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  const done = new Promise<Ran>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

/** Starts a holder and resolves once it is polling its export (it holds the lock then). */
async function holderInWait(host: string, args: readonly string[], cwd: string) {
  let reached: () => void = () => {};
  const waiting = new Promise<void>((r) => (reached = r));
  const h = inNamespace(host, [...args, "--json"], cwd, (line) => {
    if (/"kind":"step.start",.*"step":"wait"/.test(line)) reached();
  });
  await Promise.race([
    waiting,
    h.done.then((r) => Promise.reject(new Error(`the holder ended early: ${r.code}\n${r.stdout}\n${r.stderr}`))),
  ]);
  return h;
}

async function sigkill(h: { child: ChildProcess; done: Promise<Ran> }): Promise<void> {
  h.child.kill("SIGKILL");
  await h.done;
}

describe("stale locks across pid and UTS namespaces (unshare)", { skip }, () => {
  const clouds: LocalCloud[] = [];
  const dirs: string[] = [];
  after(async () => {
    await Promise.all(clouds.map((c) => c.close()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const setup = async (train: number, perSecond: number) => {
    // A slow export keeps the holder in `wait` (holding the lock) for seconds.
    const cloud = await startLocalCloud({
      dataset: { train, test: 1, instanceBytes: 1024 },
      exportInstancesPerSecond: perSecond,
    });
    clouds.push(cloud);
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-lockns-"));
    dirs.push(dir);
    const cfg = await demoConfig(dir);
    return {
      cloud,
      dir,
      args: ["run", cfg, "--emulator", cloud.baseUrl],
      lock: path.join(dir, "out", ".hcexport", "lock"),
    };
  };

  test("7a: a restarted container (same hostname, new pid namespace, the same pid 1) takes the dead holder's lock", async () => {
    const { cloud, dir, args, lock } = await setup(16, 3);
    const holder = await holderInWait("ctr-1", args, dir);
    const held = JSON.parse(await readFile(lock, "utf8")) as { pid: number; host: string; pidNs: string };
    assert.equal(held.pid, 1);
    assert.equal(held.host, "ctr-1");
    assert.match(held.pidNs, /^pid:\[\d+\]$/);
    await sigkill(holder);
    // The dead holder's lock is still there; the restarted container has pid 1 too.
    assert.equal(JSON.parse(await readFile(lock, "utf8")).pid, 1);
    const rerun = await inNamespace("ctr-1", args, dir).done;
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stderr, /! took over the lock .*: pid 1 on ctr-1 had our pid/);
    // Resumed, not repeated: the export the dead holder started is replayed, none is started again.
    assert.match(rerun.stderr, /✔ export train: .*operations\/\d+ \(in an earlier run\)/);
    assert.equal(cloud.healthcare.operations().filter((o) => o.method.endsWith("ExportDicomData")).length, 2);
    await assert.rejects(readFile(lock), { code: "ENOENT" });
  });

  test("7b: another pod (another hostname) gets exit 6 while the holder beats, and takes over once it is gone", async () => {
    const { dir, args, lock } = await setup(14, 1); // ~14 s of export: the holder outlives the 3 s wait and a slow start of the second run
    const bound = ["--lock-stale-after", "2"];
    const holder = await holderInWait("cron-a", [...args, ...bound], dir);
    // Longer than the bound: only the holder's heartbeat keeps its lock fresh.
    await new Promise((r) => setTimeout(r, 3000));
    const blocked = await inNamespace("cron-b", [...args, ...bound], dir).done;
    assert.equal(blocked.code, 6, blocked.stderr);
    assert.match(blocked.stderr, /pid 1 on cron-a, started .*; pid 1 on cron-a refreshed the lock [01] s ago/);
    await sigkill(holder);
    await new Promise((r) => setTimeout(r, 2500));
    const next = await inNamespace("cron-b", [...args, ...bound], dir).done;
    assert.equal(next.code, 0, next.stderr);
    assert.match(
      next.stderr,
      /! took over the lock .*: pid 1 on cron-a \(another host\) has not refreshed the lock for \d+ s/,
    );
    await assert.rejects(readFile(lock), { code: "ENOENT" });
  });
});
