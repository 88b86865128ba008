import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request } from "undici";

test("hcexport emulator prints its endpoint, serves the dataset and stops cleanly on SIGTERM", async () => {
  const child = spawn(
    process.execPath,
    ["dist/cli/main.js", "emulator", "--port", "0", "--dataset", "siim", "--train", "5", "--test", "2"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  child.stdout.setEncoding("utf8");
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on("data", (d: string) => {
      stdout += d;
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout);
      if (m) resolve(m[1]!);
    });
    child.once("exit", () => reject(new Error(`exited early: ${stdout}`)));
  });
  const res = await request(
    `${url}/v1/projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train/dicomWeb/instances`,
  );
  assert.equal(res.statusCode, 200);
  assert.equal(((await res.body.json()) as unknown[]).length, 5);
  child.kill("SIGTERM");
  const [code] = await once(child, "exit");
  assert.equal(code, 0);
});
