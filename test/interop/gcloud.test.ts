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
    // Uploads above 150 MiB would otherwise become parallel composite uploads (compose is not emulated).
    CLOUDSDK_STORAGE_PARALLEL_COMPOSITE_UPLOAD_ENABLED: "False",
  };
});
after(async () => {
  await emu.close();
  await rm(dir, { recursive: true, force: true });
});

test(
  "gcloud storage ls and cp (both ways) against the local cloud",
  { skip: gcloud.skip, timeout: 180_000 },
  async () => {
    emu.store.createBucket({ name: "gcloud-bucket", projectNumber: "1" });
    const data = Buffer.alloc(200_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    emu.store.putObject("gcloud-bucket", "train/s1/se1/i1.dcm", data, "application/dicom");
    emu.store.putObject("gcloud-bucket", "train/s2/se2/i2.dcm", Buffer.from("second"), "application/dicom");

    const ls = await run("gcloud", ["storage", "ls", "gs://gcloud-bucket/train/**"], { env, timeout: 90_000 });
    assert.deepEqual(ls.stdout.trim().split("\n").sort(), [
      "gs://gcloud-bucket/train/s1/se1/i1.dcm",
      "gs://gcloud-bucket/train/s2/se2/i2.dcm",
    ]);

    const local = path.join(dir, "i1.dcm");
    await run("gcloud", ["storage", "cp", "gs://gcloud-bucket/train/s1/se1/i1.dcm", local], { env, timeout: 90_000 });
    assert.deepEqual(await readFile(local), data);

    const up = path.join(dir, "upload.bin");
    const upData = Buffer.from("uploaded by gcloud\n".repeat(1000));
    await writeFile(up, upData);
    await run("gcloud", ["storage", "cp", up, "gs://gcloud-bucket/uploads/upload.bin"], { env, timeout: 90_000 });
    assert.deepEqual(emu.store.readObject("gcloud-bucket", "uploads/upload.bin"), upData);

    // Above storage/resumable_threshold (8 MiB) gcloud starts a resumable upload at /resumable/upload/….
    const large = Buffer.alloc(10 * 1024 * 1024 + 3);
    for (let i = 0; i + 4 <= large.length; i += 4096) large.writeUInt32BE((i * 2654435761) >>> 0, i);
    const largeFile = path.join(dir, "large.bin");
    await writeFile(largeFile, large);
    emu.requests.clear();
    await run("gcloud", ["storage", "cp", largeFile, "gs://gcloud-bucket/uploads/large.bin"], { env, timeout: 90_000 });
    assert.ok(
      emu.requests.count("POST upload") >= 1 && emu.requests.count("PUT upload") >= 1,
      JSON.stringify(emu.requests.summary()),
    );
    assert.deepEqual(emu.store.readObject("gcloud-bucket", "uploads/large.bin"), large);

    // Sliced download: several ranged GETs stitched together, verified by gcloud's own CRC32C check.
    const sliced = path.join(dir, "sliced.bin");
    emu.requests.clear();
    await run("gcloud", ["storage", "cp", "gs://gcloud-bucket/uploads/large.bin", sliced], {
      env: {
        ...env,
        CLOUDSDK_STORAGE_SLICED_OBJECT_DOWNLOAD_THRESHOLD: "1M",
        CLOUDSDK_STORAGE_SLICED_OBJECT_DOWNLOAD_COMPONENT_SIZE: "2M",
      },
      timeout: 90_000,
    });
    assert.deepEqual(await readFile(sliced), large);
    assert.ok(emu.requests.mediaGets() >= 2, `expected a sliced download, got ${emu.requests.mediaGets()} media GETs`);

    const long = await run("gcloud", ["storage", "ls", "-l", "gs://gcloud-bucket/uploads/"], { env, timeout: 90_000 });
    assert.match(long.stdout, new RegExp(`\\s${large.length}\\s+\\S+\\s+gs://gcloud-bucket/uploads/large\\.bin`));
  },
);
