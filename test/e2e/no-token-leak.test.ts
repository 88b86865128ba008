import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud } from "../../src/emulator/local-cloud.ts";
import { credentialedEndpointEnv, startFakeAdc } from "../support/fake-adc.ts";

const TOKEN = "ya29.FAKE-SECRET-TOKEN-must-never-be-printed-7f3a9c";

test("credentials are used but the access token never appears in any output, even with --verbose or --json", async () => {
  const cloud = await startLocalCloud({ dataset: { train: 4, test: 1 }, exportInstancesPerSecond: 1000 });
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-token-"));
  const adc = await startFakeAdc(TOKEN, dir);
  try {
    const creds = adc.file;
    // 0.0.0.0 reaches the loopback server; as plain endpoints (not --emulator) they get credentials.
    const endpoint = cloud.baseUrl.replace("127.0.0.1", "0.0.0.0");
    const demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown>;
    const cfg = path.join(dir, "c.json");
    await writeFile(
      cfg,
      JSON.stringify({
        ...demo,
        grantIam: false,
        serviceAgent: SIIM.serviceAgent,
        exports: [{ store: SIIM_TRAIN_STORE, prefix: "train", dest: "./out" }],
        annotations: undefined,
        stateDir: "./state",
      }),
    );
    const env = { ...process.env, GOOGLE_APPLICATION_CREDENTIALS: creds, ...credentialedEndpointEnv(endpoint) };
    const runs: Array<[string[], number]> = [
      [["run", cfg, "--verbose"], 3],
      [["run", cfg, "--json", "--verbose"], 3],
      [["export", SIIM_TRAIN_STORE, "gs://hcexport-demo-bucket/x", "--wait", "--verbose"], 4],
      [["iam", "check", "gs://no-such-bucket", "--service-agent", SIIM.serviceAgent, "--verbose"], 1],
      [
        [
          "operations",
          "wait",
          "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/operations/999",
          "--verbose",
          "--json",
        ],
        1,
      ],
    ];
    for (const [args, expected] of runs) {
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(
          process.execPath,
          [path.resolve("src/cli/main.ts"), ...args],
          { cwd: dir, env, timeout: 60_000 },
          (err, stdout, stderr) =>
            resolve({ code: (err as { code?: number } | null)?.code ?? 0, out: `${stdout}\n${stderr}` }),
        );
      });
      assert.equal(r.code, expected, `${args.join(" ")}:\n${r.out}`);
      assert.ok(!r.out.includes(TOKEN) && !r.out.includes("FAKE-SECRET"), `token leaked by ${args.join(" ")}`);
      assert.ok(
        !r.out.includes("rtoken") && !r.out.includes("csecret"),
        `credential file secrets leaked by ${args.join(" ")}`,
      );
    }
    assert.ok(adc.tokenRequests() > 0, "the CLI really minted and used a token");
  } finally {
    await cloud.close();
    await adc.close();
    await rm(dir, { recursive: true, force: true });
  }
});
