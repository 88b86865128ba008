import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { SIIM_TEST_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { readState } from "../../src/workflow/state.ts";
import { listFiles } from "../support/chaos.ts";
import { cliIn, mountSkip, type CliResult } from "../support/cli.ts";

/**
 * Disk faults (issue #6), beyond what destination-faults.test.ts proves (mirror/pull of small
 * files into a 1 MiB tmpfs, mirror into an empty read-only tmpfs):
 *  - the whole `run` workflow with its data AND its state directory on a 2 MiB tmpfs;
 *  - large objects (> 4 MiB: the streaming writer, not the in-memory one) filling a disk mid-stream;
 *  - inode exhaustion (ENOSPC from creating files and directories, not from writing bytes) at
 *    concurrency 32;
 *  - a read-only bind mount over a destination that already holds an older mirror, while the
 *    bucket changed: EROFS, every old file untouched.
 * Root writes through chmod 0555, so read-only is a real read-only mount. Needs root and mount(2);
 * skipped loudly otherwise. Every mount is undone in `after`, lazily if it is still busy.
 */

const canMount = mountSkip("disk-faults");

const B = "disk-faults";
let cloud: LocalCloud;
let tmp: string;
const mounts: string[] = [];
const figures = { faults: 0, landedBeforeFault: 0, verified: 0, lost: 0 };

function mount(args: string[]): void {
  execFileSync("mount", args, { stdio: ["ignore", "ignore", "pipe"] });
}
async function mountTmpfs(dir: string, options: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  mount(["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  mounts.push(dir);
}
function unmount(dir: string): void {
  const i = mounts.lastIndexOf(dir);
  if (i >= 0) mounts.splice(i, 1);
  try {
    execFileSync("umount", [dir], { stdio: "ignore" });
  } catch {
    execFileSync("umount", ["-l", dir], { stdio: "ignore" }); // busy: detach now, release when free
  }
}

function cli(argv: string[], cwd = tmp): Promise<CliResult> {
  return cliIn(["--emulator", cloud.baseUrl, ...argv], { cwd, signal: AbortSignal.timeout(40_000) });
}

/** exit 1, the fault named on one `error:` line, no stack trace. */
function assertFault(r: { code: number; stderr: string }, code: "ENOSPC" | "EROFS"): number {
  assert.equal(r.code, 1, r.stderr);
  const line = r.stderr.split("\n").find((l) => l.startsWith("error: ")) ?? "";
  assert.match(
    line,
    new RegExp(`${code}: ${code === "ENOSPC" ? "no space left on device" : "read-only file system"}`),
    r.stderr,
  );
  assert.doesNotMatch(r.stderr, /^\s+at .+:\d+:\d+/m, "no stack trace");
  figures.faults++;
  return Number(/stopped after (\d+) file/.exec(line)?.[1] ?? 0);
}

/** Files under `dir` minus hcexport's own directories. */
async function dataFiles(dir: string): Promise<string[]> {
  return (await listFiles(dir)).filter((f) => !f.startsWith(".hcexport/") && !f.includes("/.hcexport/"));
}

async function assertNoTemps(dir: string): Promise<void> {
  const temps = (await listFiles(dir)).filter((f) => f.includes(TEMP_MARKER));
  assert.deepEqual(temps, [], "no temp files");
}

before(async () => {
  if (canMount !== false) return;
  cloud = await startLocalCloud({
    dataset: { train: 90, test: 60, seed: 9, instanceBytes: 20_000 },
    exportInstancesPerSecond: 5000,
  });
  cloud.store.createBucket({ name: B, projectNumber: "1" });
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-diskfaults-"));
});

after(async () => {
  for (const m of [...mounts].reverse()) unmount(m);
  await cloud?.close();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
  if (canMount === false)
    process.stderr.write(
      `# disk-faults figures: ${figures.faults} disk faults injected and survived, ${figures.landedBeforeFault} files landed before a fault (all intact), ${figures.verified} files verified byte for byte, ${figures.lost} lost\n`,
    );
});

describe("disk faults", { skip: canMount }, () => {
  test("run with data and state on a 2 MiB tmpfs: ENOSPC, state sane, lock released, no temps; after growing the disk the rerun completes without a second export", async () => {
    const root = path.join(tmp, "run-full");
    await mountTmpfs(root, "size=2m");
    const cfgDir = path.join(tmp, "run-cfg");
    await mkdir(cfgDir, { recursive: true });
    const demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown>;
    const cfg = path.join(cfgDir, "config.json");
    await writeFile(
      cfg,
      JSON.stringify({
        ...demo,
        bucket: { name: "disk-faults-run" },
        exports: [
          { store: SIIM_TRAIN_STORE, prefix: "train", dest: path.join(root, "train") },
          { store: SIIM_TEST_STORE, prefix: "test", dest: path.join(root, "test") },
        ],
        annotations: { ...(demo["annotations"] as object), dest: path.join(root, "annotations") },
        mirror: { concurrency: 32, delete: false },
        stateDir: path.join(root, ".hcexport"),
      }),
    );
    // 150 × ~20 KB = ~3 MB of instances for 2 MiB of disk.
    const r = await cli(["run", cfg, "--report", path.join(cfgDir, "report.json")], cfgDir);
    const landed = assertFault(r, "ENOSPC");
    // Whether the data or the state write hit the wall first, the message says where, and how to fix it.
    assert.ok(
      r.stderr.split("\n").some((l) => l.startsWith("error: ") && l.includes(root)),
      `the error names the full path:\n${r.stderr}`,
    );
    assert.match(r.stderr, /^ {2}fix: free space/m);
    await assertNoTemps(root);
    const expected = new Map<string, Buffer>();
    for (const [store, sub] of [
      [SIIM_TRAIN_STORE, "train"],
      [SIIM_TEST_STORE, "test"],
    ] as const) {
      for (const i of cloud.healthcare.instances(store))
        expected.set(`${sub}/${i.studyUid}/${i.seriesUid}/${i.sopInstanceUid}.dcm`, i.data());
    }
    // Instances only: the annotations step runs from the start, beside the lanes, and may land too.
    const present = (await dataFiles(root)).filter((f) => f.endsWith(".dcm"));
    assert.ok(present.length > 0 && present.length < expected.size, `${present.length} files landed`);
    for (const f of present)
      assert.ok((await readFile(path.join(root, f))).equals(expected.get(f)!), `${f} is not intact`);
    figures.landedBeforeFault += present.length;
    assert.ok(landed <= present.length);
    // State is sane: readable, exports recorded with their operation, no lock left behind.
    const state = await readState(path.join(root, ".hcexport", "state.json"));
    // The export is recorded with its operation; its wait is done, or — the mirror follows the
    // export, so the disk may fill while the operation still runs — left started, to resume.
    const started = state.steps["export:train"];
    assert.equal(started?.status, "done", "export:train recorded");
    assert.match(String((started?.result as { operation?: unknown }).operation), /\/operations\//);
    assert.ok(["done", "started"].includes(String(state.steps["wait:train"]?.status)), "wait:train");
    assert.deepEqual(
      (await listFiles(path.join(root, ".hcexport"))).filter((f) => f !== "state.json"),
      [],
      "no lock or temp file left in the state directory",
    );
    const report = JSON.parse(await readFile(path.join(cfgDir, "report.json"), "utf8")) as {
      exitCode: number;
      error: string;
    };
    assert.equal(report.exitCode, 1);
    assert.match(report.error, /ENOSPC/);
    const ops = cloud.healthcare.operations().length;

    mount(["-o", "remount,size=16m", root]);
    const again = await cli(["run", cfg], cfgDir);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(cloud.healthcare.operations().length, ops, "no second export");
    await assertNoTemps(root);
    const all = (await dataFiles(root)).filter((f) => f.endsWith(".dcm"));
    assert.deepEqual(all, [...expected.keys()].sort());
    for (const [f, data] of expected) assert.ok((await readFile(path.join(root, f))).equals(data), f);
    figures.verified += expected.size;
    const third = await cli(["run", cfg], cfgDir);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, /nothing changed/);
  });

  test("large objects (streamed, > 4 MiB) fill the disk mid-stream: ENOSPC, no partial or temp file, the rest lands after growing", async () => {
    const big = Array.from({ length: 5 }, (_, i) => {
      const b = Buffer.alloc(5 * 1024 * 1024 + 123 * i);
      for (let j = 0; j < b.length; j += 4096) b[j] = (i * 31 + j / 4096) & 0xff;
      return [`big/part-${i}.bin` as string, b] as const;
    });
    for (const [name, data] of big) cloud.store.putObject(B, name, data, "application/octet-stream");
    const dir = path.join(tmp, "big-full");
    await mountTmpfs(dir, "size=12m"); // two of five fit
    const r = await cli(["mirror", `gs://${B}/big`, dir, "--concurrency", "4"]);
    assertFault(r, "ENOSPC");
    await assertNoTemps(dir);
    const landed = await dataFiles(dir);
    assert.ok(landed.length < big.length, `${landed.length} landed`);
    for (const f of landed)
      assert.ok((await readFile(path.join(dir, f))).equals(new Map(big).get(`big/${f}`)!), `${f} is not intact`);
    figures.landedBeforeFault += landed.length;
    mount(["-o", "remount,size=40m", dir]);
    const again = await cli(["mirror", `gs://${B}/big`, dir, "--concurrency", "4", "--json"]);
    assert.equal(again.code, 0, again.stderr);
    const summary = (
      JSON.parse(again.stdout.trim().split("\n").at(-1)!) as { summary: { downloaded: number; skipped: number } }
    ).summary;
    assert.deepEqual(
      [summary.skipped, summary.downloaded],
      [landed.length, big.length - landed.length],
      "only the missing files are fetched",
    );
    for (const [name, data] of big) assert.ok((await readFile(path.join(dir, name.slice(4)))).equals(data), name);
    figures.verified += big.length;
  });

  test("a disk already full before the manifest or the pull's mark exists: ENOSPC with the path and the fix, not SQLite's message; nothing left behind", async () => {
    for (let i = 0; i < 3; i++) cloud.store.putObject(B, `full/${i}.dcm`, Buffer.alloc(1000, i), "application/dicom");
    const dir = path.join(tmp, "already-full");
    await mountTmpfs(dir, "size=1m");
    await writeFile(path.join(dir, "filler"), Buffer.alloc(1024 * 1024)).catch(() => {}); // fills it to the last block
    const r = await cli(["mirror", `gs://${B}/full`, path.join(dir, "dest")]);
    assertFault(r, "ENOSPC");
    assert.match(r.stderr, new RegExp(`^error: cannot write to ${path.join(dir, "dest")}: ENOSPC`, "m"));
    assert.doesNotMatch(r.stderr, /database or disk is full/);
    assert.match(r.stderr, /^ {2}fix: free space/m);
    await assertNoTemps(dir);
    assert.deepEqual(await dataFiles(path.join(dir, "dest")), []);
    // The pull marks its destination before it writes: a bare "ENOSPC: …, write" before.
    const pull = path.join(dir, "pull");
    const p = await cli(["dicomweb", "pull", SIIM_TRAIN_STORE, pull]);
    assertFault(p, "ENOSPC");
    assert.match(p.stderr, new RegExp(`^error: cannot write to ${pull}: ENOSPC`, "m"));
    assert.match(p.stderr, /^ {2}fix: free space/m);
    assert.deepEqual(await dataFiles(pull), []);
  });

  test("inode exhaustion at concurrency 32 (ENOSPC from creating files and directories): named, nothing partial; completes with more inodes", async () => {
    const objects = new Map<string, Buffer>();
    for (let i = 0; i < 300; i++) {
      const name = `many/d${i % 25}/f${i}.bin`;
      const data = Buffer.from(`object ${i} `.repeat(40 + (i % 7)));
      objects.set(name, data);
      cloud.store.putObject(B, name, data, "application/octet-stream");
    }
    const dir = path.join(tmp, "inodes");
    await mountTmpfs(dir, "size=32m,nr_inodes=120");
    const r = await cli(["mirror", `gs://${B}/many`, dir, "--concurrency", "32"]);
    assertFault(r, "ENOSPC");
    await assertNoTemps(dir);
    const landed = await dataFiles(dir);
    assert.ok(landed.length > 0 && landed.length < objects.size, `${landed.length} landed`);
    for (const f of landed)
      assert.ok((await readFile(path.join(dir, f))).equals(objects.get(`many/${f}`)!), `${f} is not intact`);
    figures.landedBeforeFault += landed.length;
    mount(["-o", "remount,nr_inodes=2000", dir]);
    const again = await cli(["mirror", `gs://${B}/many`, dir, "--concurrency", "32"]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await dataFiles(dir)).length, objects.size);
    for (const [name, data] of objects) assert.ok((await readFile(path.join(dir, name.slice(5)))).equals(data), name);
    figures.verified += objects.size;
  });

  test("a read-only bind mount over an older mirror while the bucket changed: EROFS, every old file untouched; writable again → the new versions land", async () => {
    const v1 = new Map<string, Buffer>();
    for (let i = 0; i < 60; i++) {
      const name = `ro/s${i % 6}/f${i}.dcm`;
      v1.set(name, Buffer.from(`version 1 of ${i} `.repeat(100)));
      cloud.store.putObject(B, name, v1.get(name)!, "application/dicom");
    }
    const dir = path.join(tmp, "ro-dest");
    const first = await cli(["mirror", `gs://${B}/ro`, dir]);
    assert.equal(first.code, 0, first.stderr);
    // Half the objects change, ten are new.
    const v2 = new Map(v1);
    for (let i = 0; i < 70; i++) {
      if (i < 60 && i % 2 === 1) continue;
      const name = `ro/s${i % 6}/f${i}.dcm`;
      v2.set(name, Buffer.from(`version 2 of ${i} `.repeat(120)));
      cloud.store.putObject(B, name, v2.get(name)!, "application/dicom");
    }
    mount(["--bind", dir, dir]);
    mounts.push(dir);
    mount(["-o", "remount,bind,ro", dir]);
    const r = await cli(["mirror", `gs://${B}/ro`, dir, "--delete"]);
    assertFault(r, "EROFS");
    assert.deepEqual(await dataFiles(dir), [...v1.keys()].map((n) => n.slice(3)).sort(), "nothing added or deleted");
    for (const [name, data] of v1)
      assert.ok(
        (await readFile(path.join(dir, name.slice(3)))).equals(data),
        `${name} changed under a read-only mount`,
      );
    figures.verified += v1.size;
    await assertNoTemps(dir);
    unmount(dir);
    const again = await cli(["mirror", `gs://${B}/ro`, dir]);
    assert.equal(again.code, 0, again.stderr);
    for (const [name, data] of v2) assert.ok((await readFile(path.join(dir, name.slice(3)))).equals(data), name);
    figures.verified += v2.size;
    await assertNoTemps(dir);
  });
});
