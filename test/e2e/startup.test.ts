import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

// Issue #14.5: `hcexport --version` and `--help` cost little more than starting Node at all,
// because the command index loads no command's code. The target is 100 ms of wall time beyond
// `node -e 0` (the bench reports it). This test allows 150 ms on a quiet machine, where `node -e 0`
// takes ~50 ms, and scales the allowance with how much slower `node -e 0` runs right now, so a
// loaded 2-core machine passes while the eager index (~280 ms beyond when quiet, 1 s under load)
// still fails. The CPU time the children used (Linux: /proc/self/stat cutime+cstime), which load
// changes less, must stay within the same 150 ms beyond `node -e 0`'s (the eager index: ~700 ms).
const LAUNCHER = path.resolve("bin/hcexport.js");
const BOUND_MS = 150;
const QUIET_BASE_MS = 60;
const CPU_BOUND_MS = 150;
const RUNS = 15;
const version = (JSON.parse(await readFile("package.json", "utf8")) as { version: string }).version;

/** CPU ms used by waited-for children so far, or undefined off Linux. */
function childrenCpuMs(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // After "pid (comm) ", field 3 is index 0: cutime and cstime are fields 16 and 17, in clock ticks (100/s).
    return (Number(fields[13]) + Number(fields[14])) * 10;
  } catch {
    return undefined;
  }
}

function wall(args: readonly string[], cpu?: number[]): number {
  const before = childrenCpuMs();
  const t = performance.now();
  const r = spawnSync(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const ms = performance.now() - t;
  const after = childrenCpuMs();
  assert.equal(r.status, 0, String(r.stderr));
  if (cpu !== undefined && before !== undefined && after !== undefined) cpu.push(after - before);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

test(`--version and --help start within ${BOUND_MS} ms of a bare node -e 0 (median of ${RUNS})`, () => {
  const cases = { base: ["-e", "0"], version: [LAUNCHER, "--version"], help: [LAUNCHER, "--help"] };
  for (const args of Object.values(cases)) wall(args); // warm the page cache and the compile cache
  type Case = keyof typeof cases;
  const times: Record<Case, number[]> = { base: [], version: [], help: [] };
  const cpu: Record<Case, number[]> = { base: [], version: [], help: [] };
  // Interleaved, so a burst of load on the machine hits all three alike.
  for (let i = 0; i < RUNS; i++)
    for (const [k, args] of Object.entries(cases)) times[k as Case].push(wall(args, cpu[k as Case]));
  const base = median(times.base);
  const bound = BOUND_MS * Math.max(1, base / QUIET_BASE_MS);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const report =
    `wall medians: node -e 0 ${base.toFixed(0)} ms, --version ${median(times.version).toFixed(0)} ms, ` +
    `--help ${median(times.help).toFixed(0)} ms (allowed ${bound.toFixed(0)} ms beyond); CPU means: ` +
    (["base", "version", "help"] as const).map((k) => `${k} ${mean(cpu[k]).toFixed(0)} ms`).join(", ");
  process.stderr.write(`startup: ${report}\n`);
  assert.ok(median(times.version) - base < bound, report);
  assert.ok(median(times.help) - base < bound, report);
  if (cpu.base.length === RUNS) {
    assert.ok(mean(cpu.version) - mean(cpu.base) < CPU_BOUND_MS, report);
    assert.ok(mean(cpu.help) - mean(cpu.base) < CPU_BOUND_MS, report);
  }
});

/**
 * Writes a preload (`--import HOOK`) that records, at exit, into LOG: every module URL Node loads
 * (ES modules and require()d CommonJS alike), then the builtins it evaluated
 * (`process.moduleLoadList`: "NativeModule http2" and so on).
 */
async function writeLoadHook(dir: string): Promise<{ hook: string; log: string }> {
  const log = path.join(dir, "loaded.txt");
  const hook = path.join(dir, "hook.mjs");
  await writeFile(
    hook,
    `import { registerHooks } from "node:module";
     import { writeFileSync } from "node:fs";
     const seen = [];
     registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });
     process.on("exit", () => writeFileSync(${JSON.stringify(log)}, [...seen, ...process.moduleLoadList].join("\\n")));`,
  );
  return { hook, log };
}

test("--version and --help load no Google SDK, HTTP client or command module", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-startup-"));
  try {
    const { hook, log } = await writeLoadHook(dir);
    for (const flag of ["--version", "--help"]) {
      const r = spawnSync(process.execPath, ["--import", pathToFileURL(hook).href, LAUNCHER, flag], {
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stderr);
      if (flag === "--version") assert.equal(r.stdout, `${version}\n`);
      else assert.match(r.stdout, /^hcexport <command> \[options\]/);
      const loaded = (await readFile(log, "utf8")).split("\n");
      assert.ok(
        loaded.some((u) => u.endsWith("/dist/cli/run-cli.js")),
        "the hook saw the CLI load (else it proves nothing)",
      );
      // `--version` alone is answered before the parser loads; `--help` needs yargs.
      assert.equal(
        loaded.some((u) => /\/node_modules\/yargs\//.test(u)),
        flag === "--help",
        `${flag}: yargs loaded?`,
      );
      const heavy = loaded.filter((u) =>
        /node_modules\/(@google-cloud|google-auth-library|gaxios|undici|zod|ora|dcmjs|selfsigned|@node-rs)\//.test(u),
      );
      assert.deepEqual(heavy, [], `${flag} loaded heavy modules`);
      const commandModules = loaded.filter((u) => /\/dist\/cli\/commands\/(?!index\.js$)/.test(u));
      assert.deepEqual(commandModules, [], `${flag} loaded command modules`);
      assert.ok(!loaded.some((u) => /node_modules\/string-width\//.test(u)), "help widths come from the cheap path");
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a mirror with nothing to fetch loads no HTTP/2, child_process or CRC32C addon; one that fetches loads what it uses", async () => {
  const { startEmulator } = await import("../../src/emulator/server.ts");
  const emu = await startEmulator();
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-startup-mirror-"));
  try {
    emu.store.createBucket({ name: "lazy", projectNumber: "1" });
    // Small: staged and verified on the main thread (whose modules the hook sees).
    for (let i = 0; i < 100; i++)
      emu.store.putObject("lazy", `full/${i}/b.dcm`, Buffer.alloc(16_000, i), "application/dicom");
    const { hook, log } = await writeLoadHook(dir);
    const loadedBy = async (prefix: string) => {
      // Asynchronously: the local cloud answers from this process's event loop.
      await promisify(execFile)(process.execPath, [
        "--import",
        pathToFileURL(hook).href,
        LAUNCHER,
        "mirror",
        `gs://lazy/${prefix}`,
        path.join(dir, prefix),
        "--emulator",
        emu.baseUrl,
        "--quiet",
      ]);
      const loaded = (await readFile(log, "utf8")).split("\n");
      return {
        http2: loaded.includes("NativeModule http2"),
        childProcess: loaded.includes("NativeModule child_process"),
        crc32: loaded.some((u) => u.includes("/node_modules/@node-rs/crc32")),
        undici: loaded.some((u) => u.includes("/node_modules/undici/")),
      };
    };
    const empty = await loadedBy("empty");
    assert.ok(empty.undici, "the hook saw the HTTP client load (else it proves nothing)");
    assert.deepEqual(
      { http2: empty.http2, childProcess: empty.childProcess, crc32: empty.crc32 },
      { http2: false, childProcess: false, crc32: false },
    );
    // Verified with the addon. (Whether its batches sync through the `sync -f` helper depends on
    // their size and the machine's dirty pages, so child_process is not asserted here.)
    const full = await loadedBy("full");
    assert.deepEqual({ http2: full.http2, crc32: full.crc32 }, { http2: false, crc32: true });
    assert.deepEqual(readFileSync(path.join(dir, "full/99/b.dcm")), Buffer.alloc(16_000, 99));
  } finally {
    await emu.close();
    await rm(dir, { recursive: true, force: true });
  }
});
