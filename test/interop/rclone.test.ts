import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { peer } from "../support/peers.ts";

const run = promisify(execFile);
const rclone = peer("rclone");
let cloud: LocalCloud;
let dir: string;

before(async () => {
  cloud = await startLocalCloud({ dataset: { train: 40, test: 5, instanceBytes: 20_000 }, exportInstancesPerSecond: 5000 });
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-rclone-"));
});
after(async () => {
  await cloud.close();
  await rm(dir, { recursive: true, force: true });
});

test("rclone copies an emulated export byte-identically", { skip: rclone.skip }, async () => {
  cloud.store.createBucket({ name: "rclone-bucket", projectNumber: "1" });
  cloud.store.setPolicy("rclone-bucket", { version: 1, bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }] });
  const start = await request(`${cloud.baseUrl}/v1/${SIIM_TRAIN_STORE}:export`, { method: "POST", body: JSON.stringify({ gcsDestination: { uriPrefix: "gs://rclone-bucket/train" } }) });
  const { name } = (await start.body.json()) as { name: string };
  for (let i = 0; i < 200; i++) {
    const op = (await (await request(`${cloud.baseUrl}/v1/${name}`)).body.json()) as { done?: boolean; error?: unknown };
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
  const { stdout } = await run("rclone", ["lsjson", "-R", "--files-only", "--hash", ":gcs:rclone-bucket/train", ...flags], { timeout: 60_000 });
  const listed = JSON.parse(stdout) as Array<{ Size: number; Hashes: { md5: string } }>;
  assert.equal(listed.length, instances.length);
  // rclone's own md5 check passes on every object.
  const check = await run("rclone", ["check", ":gcs:rclone-bucket/train", dir, ...flags], { timeout: 60_000 }).catch((e: { stderr: string }) => e);
  assert.match(String((check as { stderr: string }).stderr), /0 differences found/);
});
