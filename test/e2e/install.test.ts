import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { listFiles, STACK_TRACE } from "../support/chaos.ts";

// Issue #14.4: hcexport as a user installs it. One `npm pack` of a copy of this checkout (its
// `prepare` builds dist/ there, not in the tree other tests are running from), one
// `npm install -g --prefix TMP` of the tarball, then the installed command from another directory:
// `--version`, `demo`, `mirror` against an installed `emulator` — and under the machine's own
// Node 20, the launcher's one-line refusal.
const run = promisify(execFile);
const NODE24_DIR = path.dirname(process.execPath);
const OLD_NODE = "/usr/bin/node";
const version = (JSON.parse(await readFile("package.json", "utf8")) as { version: string }).version;
let tmp: string;
let prefix: string;
let userEnv: NodeJS.ProcessEnv;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-install-"));
  const copy = path.join(tmp, "checkout");
  const files = spawnSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], { encoding: "utf8" })
    .stdout.split("\0")
    .filter((f) => f !== "" && existsSync(f));
  for (const f of files) await cp(f, path.join(copy, f), { recursive: true });
  await symlink(path.resolve("node_modules"), path.join(copy, "node_modules"));
  const t0 = performance.now();
  const npmEnv = { ...process.env, PATH: `${NODE24_DIR}${path.delimiter}${process.env["PATH"] ?? ""}` };
  const packed = await run("npm", ["pack", "--json", "--pack-destination", tmp], {
    cwd: copy,
    env: npmEnv,
    timeout: 120_000,
  });
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  const t1 = performance.now();
  const shipped = info!.files.map((f) => f.path);
  assert.ok(shipped.includes("bin/hcexport.js") && shipped.includes("dist/cli/main.js"), shipped.join(" "));
  const unwanted = shipped.filter((p) => /^(src|test|scripts|\.ci)\/|\.map$|\.d\.ts$|tsconfig/.test(p));
  assert.deepEqual(unwanted, [], "the tarball ships only what runs");
  prefix = path.join(tmp, "prefix");
  await run(
    "npm",
    [
      "install",
      "-g",
      "--prefix",
      prefix,
      "--prefer-offline",
      "--no-audit",
      "--no-fund",
      path.join(tmp, info!.filename),
    ],
    { cwd: tmp, env: npmEnv, timeout: 120_000 },
  );
  process.stderr.write(
    `install: npm pack (with its build) ${((t1 - t0) / 1000).toFixed(1)} s, npm install -g ${((performance.now() - t1) / 1000).toFixed(1)} s\n`,
  );
  // The user's shell: the installed bin and Node 24 first on PATH, nothing from this checkout.
  userEnv = { ...process.env, PATH: [path.join(prefix, "bin"), NODE24_DIR, "/usr/bin", "/bin"].join(path.delimiter) };
  delete userEnv["NODE_OPTIONS"];
});
after(async () => {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

test("the installed hcexport --version, from another directory", { timeout: 30_000 }, async () => {
  const away = await mkdtemp(path.join(tmp, "away-"));
  const r = await run("hcexport", ["--version"], { cwd: away, env: userEnv });
  assert.equal(r.stdout, `${version}\n`);
  const installed = path.join(prefix, "lib", "node_modules", "hcexport");
  assert.ok(existsSync(path.join(installed, "dist", "cli", "main.js")));
  assert.ok(!existsSync(path.join(installed, "src")), "no TypeScript sources installed");
  assert.ok(existsSync(path.join(installed, "node_modules", "@node-rs", "crc32")), "runtime deps installed");
  assert.ok(!existsSync(path.join(installed, "node_modules", "typescript")), "no devDependencies installed");
});

test("the installed hcexport demo runs end to end in a temporary directory", { timeout: 90_000 }, async () => {
  const away = await mkdtemp(path.join(tmp, "demo-"));
  const r = await run("hcexport", ["demo", "--out", "out", "--train", "12", "--test", "4"], {
    cwd: away,
    env: userEnv,
    timeout: 80_000,
  });
  assert.match(r.stdout, /verified\s+16 files byte-identical/);
  assert.equal((await listFiles(path.join(away, "out"))).filter((f) => f.endsWith(".dcm")).length, 16);
});

test("the installed hcexport mirror copies from an installed hcexport emulator", { timeout: 60_000 }, async () => {
  const away = await mkdtemp(path.join(tmp, "mirror-"));
  const emulator = spawn("hcexport", ["emulator", "--port", "0"], {
    cwd: away,
    env: userEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let out = "";
    emulator.stdout.setEncoding("utf8");
    const url = await new Promise<string>((resolve, reject) => {
      emulator.stdout.on("data", (d: string) => {
        out += d;
        const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
        if (m) resolve(m[1]!);
      });
      emulator.once("exit", () => reject(new Error(`emulator exited: ${out}`)));
    });
    const created = await request(`${url}/storage/v1/b?project=p`, {
      method: "POST",
      body: JSON.stringify({ name: "inst" }),
    });
    assert.equal(created.statusCode, 200);
    await created.body.dump();
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 20; i++) objects.set(`train/s${i}/se/i${i}.dcm`, Buffer.alloc(10_000 + i * 997, i + 1));
    for (const [name, data] of objects) {
      const up = await request(`${url}/upload/storage/v1/b/inst/o?uploadType=media&name=${encodeURIComponent(name)}`, {
        method: "POST",
        body: data,
      });
      assert.equal(up.statusCode, 200);
      await up.body.dump();
    }
    const r = await run("hcexport", ["--emulator", url, "mirror", "gs://inst/train", "data"], {
      cwd: away,
      env: userEnv,
    });
    assert.match(r.stdout, /\b20\s+20\s+0\s+0\s+0\s+0\b/, r.stdout);
    for (const [name, data] of objects) assert.deepEqual(await readFile(path.join(away, "data", name.slice(6))), data);
  } finally {
    emulator.kill("SIGTERM");
    await once(emulator, "exit");
  }
});

const old = spawnSync(OLD_NODE, ["-p", "process.versions.node"], { encoding: "utf8" });
const oldVersion = old.status === 0 ? old.stdout.trim() : undefined;
const tooOld = oldVersion !== undefined && Number(oldVersion.split(".")[0]) < 22;

test(
  `the installed launcher under the machine's own Node ${oldVersion ?? "(none)"}: one line, exit 2`,
  { skip: tooOld ? false : `${OLD_NODE} is missing or not older than Node 22: nothing to refuse` },
  async () => {
    const away = await mkdtemp(path.join(tmp, "old-"));
    // `hcexport` from PATH, its `#!/usr/bin/env node` finding the old Node first.
    const env = { ...userEnv, PATH: [path.join(prefix, "bin"), path.dirname(OLD_NODE), "/bin"].join(path.delimiter) };
    for (const args of [["--version"], ["mirror", "gs://b/p", "d"], []]) {
      const r = spawnSync("hcexport", args, { cwd: away, env, encoding: "utf8" });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stdout, "");
      const lines = r.stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, new RegExp(`needs Node\\.js >= 22\\.18 .*found ${oldVersion!.replaceAll(".", "\\.")}`));
      assert.match(lines[0]!, /nodejs\.org/);
      assert.doesNotMatch(r.stderr, STACK_TRACE);
    }
    assert.deepEqual(await readdir(away), [], "nothing written");
  },
);
