import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { startEmulator } from "../../src/emulator/server.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { peer } from "../support/peers.ts";

const run = promisify(execFile);
const rclone = peer("rclone");
let cloud: LocalCloud;
let dir: string;

before(async () => {
  cloud = await startLocalCloud({
    dataset: { train: 40, test: 5, instanceBytes: 20_000 },
    exportInstancesPerSecond: 5000,
  });
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-rclone-"));
});
after(async () => {
  await cloud.close();
  await rm(dir, { recursive: true, force: true });
});

test("rclone copies an emulated export byte-identically", { skip: rclone.skip }, async () => {
  cloud.store.createBucket({ name: "rclone-bucket", projectNumber: "1" });
  cloud.store.setPolicy("rclone-bucket", {
    version: 1,
    bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
  });
  const start = await request(`${cloud.baseUrl}/v1/${SIIM_TRAIN_STORE}:export`, {
    method: "POST",
    body: JSON.stringify({ gcsDestination: { uriPrefix: "gs://rclone-bucket/train" } }),
  });
  const { name } = (await start.body.json()) as { name: string };
  for (let i = 0; i < 200; i++) {
    const op = (await (await request(`${cloud.baseUrl}/v1/${name}`)).body.json()) as {
      done?: boolean;
      error?: unknown;
    };
    if (op.done) {
      assert.equal(op.error, undefined);
      break;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const flags = ["--gcs-anonymous", "--gcs-endpoint", `${cloud.baseUrl}/storage/v1/`, "--config", "/dev/null"];
  await run("rclone", ["copy", ":gcs:rclone-bucket/train", dir, "--transfers", "8", ...flags], { timeout: 120_000 });
  const instances = cloud.healthcare.instances(SIIM_TRAIN_STORE);
  for (const inst of instances) {
    const file = path.join(dir, inst.studyUid, inst.seriesUid, `${inst.sopInstanceUid}.dcm`);
    assert.deepEqual(await readFile(file), inst.data(), file);
  }
  const { stdout } = await run(
    "rclone",
    ["lsjson", "-R", "--files-only", "--hash", ":gcs:rclone-bucket/train", ...flags],
    { timeout: 60_000 },
  );
  const listed = JSON.parse(stdout) as Array<{ Size: number; Hashes: { md5: string } }>;
  assert.equal(listed.length, instances.length);
  // rclone's own md5 check passes on every object.
  const check = await run("rclone", ["check", ":gcs:rclone-bucket/train", dir, ...flags], { timeout: 60_000 }).catch(
    (e: { stderr: string }) => e,
  );
  assert.match(String((check as { stderr: string }).stderr), /0 differences found/);
});

test(
  "rclone: awkward names byte-identical, lsjson md5 from the listing, --checksum compares md5",
  { skip: rclone.skip, timeout: 120_000 },
  async () => {
    const emu = await startEmulator();
    const target = await mkdtemp(path.join(os.tmpdir(), "hcx-rclone-odd-"));
    try {
      emu.store.createBucket({ name: "odd-bucket", projectNumber: "1" });
      const objects = new Map<string, Buffer>();
      const names = [
        "odd/with space/a b.dcm",
        "odd/100%.bin",
        "odd/é/ü.dcm",
        "odd/deep/er/still/x.dcm",
        "odd/plus+sign&amp.bin",
        "odd/many/00.bin",
        "odd/many/01.bin",
      ];
      names.forEach((n, i) => {
        const data = Buffer.alloc(10_000 + i * 777);
        for (let j = 0; j < data.length; j++) data[j] = (j * (i + 3)) & 0xff;
        objects.set(n, data);
        emu.store.putObject("odd-bucket", n, data, "application/octet-stream");
      });
      const flags = ["--gcs-anonymous", "--gcs-endpoint", `${emu.baseUrl}/storage/v1/`, "--config", "/dev/null"];
      await run("rclone", ["copy", ":gcs:odd-bucket/odd", target, ...flags], { timeout: 60_000 });
      for (const [n, data] of objects)
        assert.deepEqual(await readFile(path.join(target, n.slice("odd/".length))), data, n);

      const { stdout } = await run(
        "rclone",
        ["lsjson", "-R", "--files-only", "--hash", ":gcs:odd-bucket/odd", ...flags],
        { timeout: 60_000 },
      );
      const listed = JSON.parse(stdout) as Array<{ Path: string; Size: number; Hashes: { md5: string } }>;
      assert.equal(listed.length, objects.size);
      for (const e of listed) {
        const data = objects.get(`odd/${e.Path}`)!;
        assert.equal(e.Size, data.length, e.Path);
        assert.equal(
          e.Hashes.md5,
          Buffer.from(emu.store.getObject("odd-bucket", `odd/${e.Path}`)!.md5Hash, "base64").toString("hex"),
          e.Path,
        );
      }

      emu.requests.clear();
      await run("rclone", ["copy", "--checksum", ":gcs:odd-bucket/odd", target, ...flags], { timeout: 60_000 });
      assert.equal(emu.requests.mediaGets(), 0, "an identical tree downloads nothing");

      // Same size, same mtime, different bytes: only a checksum comparison notices.
      const victim = path.join(target, "100%.bin");
      const before = await stat(victim);
      await writeFile(victim, Buffer.alloc(before.size, 0x41));
      // touch sets the exact nanoseconds (fs.utimes goes through a float and is off by a few ns).
      await run("touch", ["-m", "-d", emu.store.getObject("odd-bucket", "odd/100%.bin")!.updated, victim]);
      await run("rclone", ["copy", ":gcs:odd-bucket/odd", target, ...flags], { timeout: 60_000 });
      assert.equal(emu.requests.mediaGets(), 0, "size+modtime alone cannot see the change");
      await run("rclone", ["copy", "--checksum", ":gcs:odd-bucket/odd", target, ...flags], { timeout: 60_000 });
      assert.equal(emu.requests.mediaGets(), 1);
      assert.deepEqual(await readFile(victim), objects.get("odd/100%.bin"));
    } finally {
      await emu.close();
      await rm(target, { recursive: true, force: true });
    }
  },
);
