import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { listFiles } from "../support/chaos.ts";
import { cliIn, mountSkip } from "../support/cli.ts";

/**
 * The destination fails under the engines: a full file system (a 1 MiB tmpfs) and a read-only one.
 * Both `mirror` and `dicomweb pull` must stop at once with a clear error (exit 1, ENOSPC/EROFS
 * named), leave no partial or temp file, keep what landed before byte-identical, and complete
 * on a rerun once there is room. Needs root and mount(2); skipped loudly otherwise.
 */
const canMount = mountSkip("destination-faults");

const B = "dest-faults";
const OBJECTS = 40;
const SIZE = 60_000; // 40 × 60 KB = 2.4 MB: does not fit in 1 MiB
let cloud: LocalCloud;
let tmp: string;
const mounts: string[] = [];
const objects = new Map<string, Buffer>();

async function mountTmpfs(dir: string, options: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  mounts.push(dir);
}

const files = listFiles;
const cli = (argv: string[]) => cliIn(["--emulator", cloud.baseUrl, ...argv], { cwd: tmp });

before(async () => {
  if (canMount !== false) return;
  cloud = await startLocalCloud({ dataset: { train: 60, test: 0, seed: 4, instanceBytes: 60_000 } });
  cloud.store.createBucket({ name: B, projectNumber: "1" });
  for (let i = 0; i < OBJECTS; i++) {
    const data = Buffer.alloc(SIZE, i + 1);
    objects.set(`data/s${i % 4}/f${String(i).padStart(2, "0")}.bin`, data);
    cloud.store.putObject(B, `data/s${i % 4}/f${String(i).padStart(2, "0")}.bin`, data, "application/octet-stream");
  }
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-destfaults-"));
});

after(async () => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync("umount", [m]);
    } catch {
      // already unmounted
    }
  }
  await cloud?.close();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

describe("a full or read-only destination", { skip: canMount }, () => {
  test("mirror on a full disk: stops with ENOSPC (exit 1), no temp files, what landed is intact; completes once there is room", async () => {
    const dir = path.join(tmp, "mirror-full");
    await mountTmpfs(dir, "size=1m");
    const r = await cli(["mirror", `gs://${B}/data`, dir, "--concurrency", "4"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ENOSPC: no space left on device; stopped after \d+ file\(s\) landed/);
    assert.match(r.stderr, /free space/);
    const landed = (await files(dir)).filter((f) => !f.startsWith(".hcexport/"));
    assert.ok(landed.length > 0 && landed.length < OBJECTS, `${landed.length} files landed before the disk filled`);
    assert.ok(!landed.some((f) => f.includes(".hcx-tmp-")), "no temp files");
    for (const f of landed) assert.deepEqual(await readFile(path.join(dir, f)), objects.get(`data/${f}`), f);
    // Room again: the same command completes, byte for byte.
    execFileSync("mount", ["-o", "remount,size=8m", dir]);
    const again = await cli(["mirror", `gs://${B}/data`, dir, "--concurrency", "4"]);
    assert.equal(again.code, 0, again.stderr);
    const all = (await files(dir)).filter((f) => !f.startsWith(".hcexport/"));
    assert.equal(all.length, OBJECTS);
    for (const f of all) assert.deepEqual(await readFile(path.join(dir, f)), objects.get(`data/${f}`), f);
  });

  test("mirror into a read-only file system: EROFS named, exit 1, nothing written", async () => {
    const dir = path.join(tmp, "mirror-ro");
    await mountTmpfs(dir, "size=8m");
    await mkdir(path.join(dir, "dest"));
    execFileSync("mount", ["-o", "remount,ro", dir]);
    const r = await cli(["mirror", `gs://${B}/data`, path.join(dir, "dest")]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /EROFS|read-only file system/);
    assert.deepEqual(await files(dir), []);
  });

  test("dicomweb pull on a full disk: stops with ENOSPC, no temp files, the rerun with room fetches only the rest", async () => {
    const dir = path.join(tmp, "pull-full");
    await mountTmpfs(dir, "size=1m");
    const r = await cli(["dicomweb", "pull", SIIM_TRAIN_STORE, dir, "--concurrency", "4"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ENOSPC: no space left on device; stopped after (\d+) file\(s\) landed/);
    const landed = (await files(dir)).filter((f) => f.endsWith(".dcm"));
    assert.ok(!(await files(dir)).some((f) => f.includes(".hcx-tmp-")), "no temp files");
    const byPath = new Map(
      cloud.healthcare
        .instances(SIIM_TRAIN_STORE)
        .map((i) => [`${i.studyUid}/${i.seriesUid}/${i.sopInstanceUid}.dcm`, i]),
    );
    for (const f of landed) assert.deepEqual(await readFile(path.join(dir, f)), byPath.get(f)!.data(), f);
    execFileSync("mount", ["-o", "remount,size=16m", dir]);
    const again = await cli(["--json", "dicomweb", "pull", SIIM_TRAIN_STORE, dir, "--concurrency", "4"]);
    assert.equal(again.code, 0, again.stderr);
    const summary = again.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { kind: string; summary?: { downloaded: number; skipped: number } })
      .find((e) => e.kind === "result")!.summary!;
    assert.deepEqual([summary.skipped, summary.downloaded], [landed.length, byPath.size - landed.length]);
    for (const [f, inst] of byPath) assert.deepEqual(await readFile(path.join(dir, f)), inst.data(), f);
  });
});
