import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { X509Certificate } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Agent, request } from "undici";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { listFiles, requireBuiltCli, spawnCli } from "../support/chaos.ts";
import { peer } from "../support/peers.ts";

// The local cloud over HTTPS (issue #13.6): real clients pointed at the CA file it wrote list and
// download byte-identically; without the CA they refuse to talk to it, so TLS is really in play.
const run = promisify(execFile);
const rclone = peer("rclone");
const gcloud = peer("gcloud");
let emu: RunningEmulator;
let ca: string;
let dir: string;
const BUCKET = "tls-bucket";
const objects = new Map<string, Buffer>();

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "hcx-tls-"));
  emu = await startEmulator({ tls: true, dataDir: path.join(dir, "data") });
  ca = emu.tls!.caPath;
  emu.store.createBucket({ name: BUCKET, projectNumber: "1" });
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 131 + 7) & 0xff;
  objects.set("train/s1/se1/i1.dcm", big);
  objects.set("train/s2/se2/i2.dcm", Buffer.from("second instance"));
  objects.set("train/s3/se3/i3.dcm", Buffer.alloc(70_000, 0x5a));
  for (const [name, data] of objects) emu.store.putObject(BUCKET, name, data, "application/dicom");
});
after(async () => {
  await emu.close();
  await rm(dir, { recursive: true, force: true });
});

async function assertMirrored(root: string): Promise<void> {
  const files = (await listFiles(root)).filter((f) => !f.startsWith(".hcexport/"));
  assert.deepEqual(files, [...objects.keys()].sort());
  for (const [name, data] of objects) assert.deepEqual(await readFile(path.join(root, name)), data, name);
}

test("the certificate: a CA file under --data, a server certificate for 127.0.0.1, ::1 and localhost", async () => {
  assert.match(emu.baseUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(ca, path.join(dir, "data", "tls", "ca.pem"));
  const caCert = new X509Certificate(await readFile(ca));
  assert.ok(caCert.ca);
  const leaf = new X509Certificate(await readFile(path.join(dir, "data", "tls", "server.pem")));
  assert.ok(leaf.verify(caCert.publicKey));
  assert.equal(leaf.ca, false);
  assert.equal(leaf.checkIP("127.0.0.1"), "127.0.0.1");
  assert.equal(leaf.checkIP("::1"), "::1");
  assert.equal(leaf.checkHost("localhost"), "localhost");
  assert.equal(leaf.checkHost("storage.googleapis.com"), undefined);
  assert.equal(leaf.publicKey.asymmetricKeyType, "ec");
});

test("hcexport mirror over TLS with --ca-cert; refused without it", { timeout: 120_000 }, async () => {
  const cli = requireBuiltCli();
  const dest = path.join(dir, "hcexport");
  const bad = await spawnCli(cli, ["--emulator", emu.baseUrl, "mirror", `gs://${BUCKET}`, dest], {
    cwd: dir,
    env: { NODE_EXTRA_CA_CERTS: "" },
  });
  assert.equal(bad.code, 5, bad.stderr);
  assert.match(bad.stderr, /certificate/);
  emu.requests.clear();
  const ok = await spawnCli(cli, ["--emulator", emu.baseUrl, "--ca-cert", ca, "mirror", `gs://${BUCKET}`, dest], {
    cwd: dir,
  });
  assert.equal(ok.code, 0, ok.stderr);
  await assertMirrored(path.join(dest));
  assert.equal(emu.requests.count("GET object.media"), objects.size);
  // NODE_EXTRA_CA_CERTS works as well (no flag).
  const viaEnv = await spawnCli(cli, ["--emulator", emu.baseUrl, "mirror", `gs://${BUCKET}`, `${dest}-env`], {
    cwd: dir,
    env: { NODE_EXTRA_CA_CERTS: ca },
  });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  await assertMirrored(`${dest}-env`);
});

test("rclone lists and copies over TLS with --ca-cert", { skip: rclone.skip, timeout: 120_000 }, async () => {
  const flags = ["--gcs-anonymous", "--gcs-endpoint", `${emu.baseUrl}/storage/v1/`];
  await assert.rejects(run("rclone", ["lsf", "-R", `:gcs:${BUCKET}/train`, ...flags], { timeout: 60_000 }), /x509/);
  const ls = await run("rclone", ["lsf", "-R", "--files-only", "--ca-cert", ca, `:gcs:${BUCKET}/train`, ...flags], {
    timeout: 60_000,
  });
  assert.deepEqual(ls.stdout.trim().split("\n").sort(), [...objects.keys()].map((n) => n.slice(6)).sort());
  const dest = path.join(dir, "rclone");
  await run("rclone", ["copy", "--ca-cert", ca, `:gcs:${BUCKET}/train`, path.join(dest, "train"), ...flags], {
    timeout: 60_000,
  });
  await assertMirrored(dest);
});

test(
  "gcloud storage lists and copies over TLS with core/custom_ca_certs_file",
  { skip: gcloud.skip, timeout: 240_000 },
  async () => {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CLOUDSDK_CONFIG: path.join(dir, "gcloud-config"),
      CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE: `${emu.baseUrl}/`,
      CLOUDSDK_AUTH_DISABLE_CREDENTIALS: "True",
      CLOUDSDK_CORE_DISABLE_PROMPTS: "1",
      CLOUDSDK_CORE_PROJECT: "gcloud-project",
      CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE: ca,
    };
    // requests (inside gcloud) lets these override custom_ca_certs_file; machines often set them.
    delete env["REQUESTS_CA_BUNDLE"];
    delete env["CURL_CA_BUNDLE"];
    const ls = await run("gcloud", ["storage", "ls", `gs://${BUCKET}/train/**`], { env, timeout: 120_000 });
    assert.deepEqual(ls.stdout.trim().split("\n").sort(), [...objects.keys()].map((n) => `gs://${BUCKET}/${n}`).sort());
    const dest = path.join(dir, "gcloud");
    await mkdir(dest);
    await run("gcloud", ["storage", "cp", "-r", `gs://${BUCKET}/train`, dest], { env, timeout: 120_000 });
    await assertMirrored(dest);
  },
);

test("@google-cloud/storage lists and downloads over TLS with NODE_EXTRA_CA_CERTS", { timeout: 60_000 }, async () => {
  const dest = path.join(dir, "sdk");
  const script = `
    import { Storage } from "@google-cloud/storage";
    import { mkdirSync } from "node:fs";
    import path from "node:path";
    const storage = new Storage({ apiEndpoint: process.argv[1], projectId: "p", retryOptions: { maxRetries: 0 } });
    const [files] = await storage.bucket(process.argv[2]).getFiles({ prefix: "train/" });
    for (const f of files) {
      const to = path.join(process.argv[3], f.name);
      mkdirSync(path.dirname(to), { recursive: true });
      await f.download({ destination: to, validation: "crc32c" });
    }
    console.log(files.length);`;
  const args = ["--input-type=module", "-e", script, emu.baseUrl, BUCKET, dest];
  const env = { ...process.env, STORAGE_EMULATOR_HOST: "" };
  await assert.rejects(run(process.execPath, args, { env: { ...env, NODE_EXTRA_CA_CERTS: "" }, timeout: 30_000 }));
  const ok = await run(process.execPath, args, { env: { ...env, NODE_EXTRA_CA_CERTS: ca }, timeout: 30_000 });
  assert.equal(ok.stdout.trim(), String(objects.size));
  await assertMirrored(dest);
});

test("hcexport emulator --tls prints its https URL and the CA file; a client trusting that CA is served", async () => {
  const data = path.join(dir, "cli-data");
  const child = spawn(process.execPath, [requireBuiltCli(), "emulator", "--tls", "--data", data], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  try {
    let out = "";
    child.stdout.setEncoding("utf8");
    const [url, caFile] = await new Promise<[string, string]>((resolve, reject) => {
      child.stdout.on("data", (d: string) => {
        out += d;
        const m = /^listening on (https:\/\/127\.0\.0\.1:\d+)\nca certificate (.+)\n/m.exec(out);
        if (m) resolve([m[1]!, m[2]!]);
      });
      child.once("exit", () => reject(new Error(`exited early: ${out}`)));
    });
    assert.equal(caFile, path.join(data, "tls", "ca.pem"));
    const agent = new Agent({ connect: { ca: await readFile(caFile, "utf8") } });
    const res = await request(`${url}/_emulator/health`, { dispatcher: agent });
    assert.deepEqual(await res.body.json(), { status: "ok" });
    await agent.close();
  } finally {
    child.kill("SIGTERM");
    await once(child, "exit");
  }
});
