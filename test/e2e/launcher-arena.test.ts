import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

// The launcher starts the long-running commands again in the same process (execve) with
// MALLOC_ARENA_MAX=1, for the peak RSS of their threads (bin/hcexport.js). Seen from outside: the
// pid a user started is the CLI itself, with the variable in its environment; `--version`, `--help`
// and the short commands start Node once; a value the user set is kept; and exit codes, stdout and
// signals are those of a CLI that was never restarted.
const LAUNCHER = path.resolve("bin/hcexport.js");
const linux = process.platform === "linux" && typeof (process as { execve?: unknown }).execve === "function";
const skip = linux ? false : "execve and /proc are Linux's (the launcher restarts nothing elsewhere)";

/** A preload that appends `pid MALLOC_ARENA_MAX` to `log` each time a Node process boots with it. */
async function bootLog(dir: string): Promise<{ env: NodeJS.ProcessEnv; boots: () => string[] }> {
  const log = path.join(dir, "boots.log");
  const preload = path.join(dir, "count-boots.cjs");
  await writeFile(
    preload,
    `require("node:fs").appendFileSync(${JSON.stringify(log)}, process.pid + " " + (process.env.MALLOC_ARENA_MAX ?? "-") + "\\n");\n`,
  );
  return {
    env: { NODE_OPTIONS: `--require ${preload}` },
    boots: () => {
      try {
        return readFileSync(log, "utf8").trim().split("\n").filter(Boolean);
      } catch {
        return [];
      }
    },
  };
}

function run(args: string[], env: NodeJS.ProcessEnv, cwd: string) {
  const merged = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  return spawnSync(process.execPath, [LAUNCHER, ...args], { cwd, env: merged, encoding: "utf8", timeout: 30_000 });
}

describe("the launcher's one-arena restart", { skip }, () => {
  test("a long-running command is the pid that was started, with MALLOC_ARENA_MAX=1; SIGTERM ends it as before", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-arena-"));
    try {
      const results: Array<{ environ: string[]; cmdline: string[]; code: number | null; signal: string | null }> = [];
      for (const arena of [undefined, ""] as const) {
        const env: NodeJS.ProcessEnv = { ...process.env };
        delete env["MALLOC_ARENA_MAX"];
        if (arena !== undefined) env["MALLOC_ARENA_MAX"] = arena; // set empty: the user's opt-out, no restart
        const child = spawn(process.execPath, [LAUNCHER, "emulator", "--port", "0", "--train", "2", "--test", "0"], {
          cwd: dir,
          env,
          stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        child.stdout.setEncoding("utf8");
        await new Promise<void>((resolve, reject) => {
          child.stdout.on("data", (d: string) => {
            out += d;
            if (/^listening on http:\/\/127\.0\.0\.1:\d+$/m.test(out)) resolve();
          });
          child.once("exit", (c) => reject(new Error(`exited (${c}) before listening: ${out}`)));
        });
        // /proc of the pid spawn() returned: the process serving now, after any restart.
        const environ = readFileSync(`/proc/${child.pid}/environ`, "latin1").split("\0");
        const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, "latin1").split("\0").filter(Boolean);
        child.kill("SIGTERM");
        const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
        results.push({ environ, cmdline, code, signal });
      }
      const [restarted, plain] = results as [(typeof results)[0], (typeof results)[0]];
      // (Only the variable itself in a message: the environment may hold credentials.)
      const arenaOf = (e: string[]) => e.filter((v) => v.startsWith("MALLOC_ARENA_MAX=")).join(" ") || "unset";
      assert.ok(restarted.environ.includes("MALLOC_ARENA_MAX=1"), arenaOf(restarted.environ));
      assert.ok(plain.environ.includes("MALLOC_ARENA_MAX="), "the user's empty value is kept");
      // The same program and arguments, in the process the caller holds the pid of.
      assert.deepEqual(restarted.cmdline, [
        process.execPath,
        LAUNCHER,
        "emulator",
        "--port",
        "0",
        "--train",
        "2",
        "--test",
        "0",
      ]);
      assert.deepEqual(restarted.cmdline, plain.cmdline);
      assert.deepEqual([restarted.code, restarted.signal], [plain.code, plain.signal]);
      assert.deepEqual([restarted.code, restarted.signal], [0, null]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("Node boots twice for a long command (same pid), once for --version, --help, a short command or the user's own value", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-arena-"));
    try {
      const noArena = { MALLOC_ARENA_MAX: undefined };
      const cases: Array<{ args: string[]; env: NodeJS.ProcessEnv; boots: number; arena: string }> = [
        // A usage error (no arguments): it fails fast, after the restart.
        { args: ["mirror"], env: noArena, boots: 2, arena: "1" },
        { args: ["--quiet", "dicomweb", "pull"], env: noArena, boots: 2, arena: "1" },
        { args: ["--version"], env: noArena, boots: 1, arena: "-" },
        { args: ["mirror", "--help"], env: noArena, boots: 1, arena: "-" },
        { args: ["status", "/nonexistent/config.json"], env: noArena, boots: 1, arena: "-" },
        { args: ["mirror"], env: { MALLOC_ARENA_MAX: "4" }, boots: 1, arena: "4" },
      ];
      let i = 0;
      for (const c of cases) {
        const sub = path.join(dir, String(i++));
        await mkdir(sub);
        const log = await bootLog(sub);
        const r = run(c.args, { ...c.env, ...log.env }, sub);
        const boots = log.boots();
        const what = `hcexport ${c.args.join(" ")} (${JSON.stringify(c.env)}): ${boots.join(", ")}; ${r.stderr}`;
        assert.equal(boots.length, c.boots, what);
        assert.equal(new Set(boots.map((b) => b.split(" ")[0])).size, 1, `one pid: ${what}`);
        assert.equal(boots.at(-1)!.split(" ")[1], c.arena, what);
        // Against the same command with the restart turned off: the same exit code and output.
        const plainLog = await bootLog(await mkdtemp(path.join(sub, "plain-")));
        const plain = run(
          c.args,
          { ...c.env, MALLOC_ARENA_MAX: c.env["MALLOC_ARENA_MAX"] ?? "", ...plainLog.env },
          sub,
        );
        assert.equal(r.status, plain.status, what);
        assert.equal(r.stdout, plain.stdout, what);
        assert.equal(r.stderr, plain.stderr, what);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
