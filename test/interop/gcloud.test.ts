import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { peer } from "../support/peers.ts";

const run = promisify(execFile);
const gcloud = peer("gcloud");
let emu: RunningEmulator;
let dir: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  emu = await startEmulator();
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-gcloud-"));
  env = {
    ...process.env,
    CLOUDSDK_CONFIG: path.join(dir, "config"),
    CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE: `${emu.baseUrl}/`,
    CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
    CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
    CLOUDSDK_CORE_PROJECT: "gcloud-project",
  };
});
after(async () => {
  await emu.close();
  await rm(dir, { recursive: true, force: true });
});

test("gcloud storage ls and cp (both ways) against the local cloud", { skip: gcloud.skip, timeout: 180_000 }, async () => {
  emu.store.createBucket({ name: "gcloud-bucket", projectNumber: "1" });
  const data = Buffer.alloc(200_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
  emu.store.putObject("gcloud-bucket", "train/s1/se1/i1.dcm", data, "application/dicom");
  emu.store.putObject("gcloud-bucket", "train/s2/se2/i2.dcm", Buffer.from("second"), "application/dicom");

  const ls = await run("gcloud", ["storage", "ls", "gs://gcloud-bucket/train/**"], { env, timeout: 90_000 });
  assert.deepEqual(ls.stdout.trim().split("\n").sort(), ["gs://gcloud-bucket/train/s1/se1/i1.dcm", "gs://gcloud-bucket/train/s2/se2/i2.dcm"]);

  const local = path.join(dir, "i1.dcm");
  await run("gcloud", ["storage", "cp", "gs://gcloud-bucket/train/s1/se1/i1.dcm", local], { env, timeout: 90_000 });
  assert.deepEqual(await readFile(local), data);

  const up = path.join(dir, "upload.bin");
  const upData = Buffer.from("uploaded by gcloud\n".repeat(1000));
  await writeFile(up, upData);
  await run("gcloud", ["storage", "cp", up, "gs://gcloud-bucket/uploads/upload.bin"], { env, timeout: 90_000 });
  assert.deepEqual(emu.store.readObject("gcloud-bucket", "uploads/upload.bin"), upData);
});
