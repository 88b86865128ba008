import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

// The launcher keeps V8's compiled code in this user's own cache directory, never in Node's
// default os.tmpdir()/node-compile-cache: on a shared machine whoever makes that directory first
// owns it, and an entry planted there would run as code in every later run of anyone's hcexport.
const LAUNCHER = path.resolve("bin/hcexport.js");
const version = (JSON.parse(await readFile("package.json", "utf8")) as { version: string }).version;

interface Env {
  HOME: string;
  TMPDIR: string;
  XDG_CACHE_HOME?: string;
}

/** `hcexport --version` with only these variables (and PATH), in `cwd`; the compile cache's debug log on stderr. */
function version_(env: Env, cwd: string): { stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [LAUNCHER, "--version"], {
    cwd,
    encoding: "utf8",
    env: { PATH: process.env["PATH"], NODE_DEBUG_NATIVE: "COMPILE_CACHE", ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, `${version}\n`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Every file below `dir` (relative paths), or [] when it does not exist. */
function filesBelow(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .map((d) => path.relative(dir, path.join(d.parentPath, d.name)));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}

async function scratch(): Promise<{ root: string; home: string; tmp: string; cwd: string; done: () => Promise<void> }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "hcx-compile-cache-"));
  const [home, tmp, cwd] = [path.join(root, "home"), path.join(root, "tmp"), path.join(root, "cwd")];
  for (const d of [home, tmp, cwd]) mkdirSync(d);
  return { root, home, tmp, cwd, done: () => rm(root, { recursive: true, force: true }) };
}

test("the compile cache lives in ~/.cache/hcexport/compile-cache (0700), is read back on the next run, and nothing lands in TMPDIR", async () => {
  const s = await scratch();
  try {
    const env = { HOME: s.home, TMPDIR: s.tmp };
    const first = version_(env, s.cwd);
    const dir = path.join(s.home, ".cache", "hcexport", "compile-cache");
    assert.equal(lstatSync(dir).mode & 0o777, 0o700);
    assert.ok(filesBelow(dir).length > 0, `no cache written: ${first.stderr.slice(0, 2000)}`);
    assert.match(
      first.stderr,
      new RegExp(`${dir.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}`),
      "the debug log names our directory",
    );
    const second = version_(env, s.cwd);
    assert.match(second.stderr, /was accepted/, "the second run compiled from the cache");
    assert.deepEqual(filesBelow(s.tmp), [], "nothing in TMPDIR");
    assert.deepEqual(filesBelow(s.cwd), [], "nothing in the working directory");
  } finally {
    await s.done();
  }
});

test("XDG_CACHE_HOME wins over ~/.cache; a relative one is ignored", async () => {
  const s = await scratch();
  try {
    const xdg = path.join(s.root, "xdg");
    version_({ HOME: s.home, TMPDIR: s.tmp, XDG_CACHE_HOME: xdg }, s.cwd);
    assert.ok(filesBelow(path.join(xdg, "hcexport", "compile-cache")).length > 0);
    assert.deepEqual(filesBelow(s.home), []);
    // The XDG spec: a relative path is invalid and ignored.
    version_({ HOME: s.home, TMPDIR: s.tmp, XDG_CACHE_HOME: "rel" }, s.cwd);
    assert.deepEqual(filesBelow(s.cwd), [], "nothing below the working directory");
    assert.ok(filesBelow(path.join(s.home, ".cache", "hcexport", "compile-cache")).length > 0);
  } finally {
    await s.done();
  }
});

test("a cache directory others can write to, a symlink, or one owned by someone else is not used: the run starts without a cache", async () => {
  const s = await scratch();
  try {
    const env = { HOME: s.home, TMPDIR: s.tmp };
    const parent = path.join(s.home, ".cache", "hcexport");
    const dir = path.join(parent, "compile-cache");
    const cases: Array<[string, () => string]> = [
      [
        "world-writable",
        () => {
          mkdirSync(dir, { recursive: true });
          chmodSync(dir, 0o777);
          return dir;
        },
      ],
      [
        "group-writable",
        () => {
          mkdirSync(dir, { recursive: true });
          chmodSync(dir, 0o770);
          return dir;
        },
      ],
      [
        "a symlink to someone's directory",
        () => {
          const elsewhere = path.join(s.root, "planted");
          mkdirSync(elsewhere, { recursive: true, mode: 0o700 });
          mkdirSync(parent, { recursive: true });
          symlinkSync(elsewhere, dir);
          return elsewhere;
        },
      ],
    ];
    // Only root can hand a directory to another user: the check runs where the suite runs as root (CI).
    if (process.getuid?.() === 0)
      cases.push([
        "owned by another user",
        () => {
          mkdirSync(dir, { recursive: true, mode: 0o700 });
          chownSync(dir, 65534, 65534);
          return dir;
        },
      ]);
    for (const [name, make] of cases) {
      await rm(path.join(s.home, ".cache"), { recursive: true, force: true });
      await rm(path.join(s.root, "planted"), { recursive: true, force: true });
      const watched = make();
      const r = version_(env, s.cwd);
      assert.deepEqual(filesBelow(watched), [], `${name}: a cache entry was written`);
      assert.doesNotMatch(r.stderr, /was accepted|writing cache/i, `${name}: the cache was used`);
      assert.deepEqual(filesBelow(s.tmp), [], `${name}: fell back to TMPDIR`);
    }
  } finally {
    await s.done();
  }
});

test("no usable home: the run starts without a cache and writes nothing below the working directory", async () => {
  const s = await scratch();
  try {
    for (const HOME of ["", "relative-home"]) {
      const r = version_({ HOME, TMPDIR: s.tmp }, s.cwd);
      assert.doesNotMatch(r.stderr, /writing cache/i);
      assert.deepEqual(filesBelow(s.cwd), [], `HOME=${JSON.stringify(HOME)}`);
      assert.deepEqual(filesBelow(s.tmp), []);
    }
  } finally {
    await s.done();
  }
});

test("NODE_DISABLE_COMPILE_CACHE=1 leaves no cache directory; NODE_COMPILE_CACHE=DIR is the one used", async () => {
  const s = await scratch();
  try {
    const run = (extra: Record<string, string>) =>
      spawnSync(process.execPath, [LAUNCHER, "--version"], {
        cwd: s.cwd,
        encoding: "utf8",
        env: { PATH: process.env["PATH"], HOME: s.home, TMPDIR: s.tmp, ...extra },
      });
    const off = run({ NODE_DISABLE_COMPILE_CACHE: "1" });
    assert.equal(off.status, 0, off.stderr);
    assert.deepEqual(readdirSync(s.home), []);
    const chosen = path.join(s.root, "chosen");
    const on = run({ NODE_COMPILE_CACHE: chosen });
    assert.equal(on.status, 0, on.stderr);
    assert.ok(filesBelow(chosen).length > 0);
    assert.deepEqual(readdirSync(s.home), [], "no directory of ours made as well");
  } finally {
    await s.done();
  }
});
