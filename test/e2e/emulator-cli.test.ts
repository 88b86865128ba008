import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { request } from "undici";
import { crc32cBase64 } from "../../src/core/hashing.ts";

test("hcexport emulator prints its endpoint, serves the dataset and stops cleanly on SIGTERM", async () => {
  const cli = await startCli(["--dataset", "siim", "--train", "5", "--test", "2"]);
  try {
    const res = await request(
      `${cli.url}/v1/projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train/dicomWeb/instances`,
    );
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as unknown[]).length, 5);
  } finally {
    assert.equal(await cli.stop(), 0);
  }
});

/** `hcexport emulator ARGS` on a free port; resolves with its URL and a stop function (SIGTERM, exit code). */
async function startCli(args: string[]): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, ["dist/cli/main.js", "emulator", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
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
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      const [code] = (await once(child, "exit")) as [number | null];
      return code;
    },
  };
}

test("hcexport emulator --stored serves the same instance bytes and digests as rendering per request", async () => {
  const dataset = ["--dataset", "siim", "--train", "3", "--test", "0", "--seed", "7", "--instance-bytes", "20000"];
  const [rendered, stored] = await Promise.all([startCli(dataset), startCli([...dataset, "--stored"])]);
  try {
    const web =
      "/v1/projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train/dicomWeb";
    const rows = (await (await request(`${rendered.url}${web}/instances`)).body.json()) as Array<
      Record<string, { Value: [string] }>
    >;
    assert.equal(rows.length, 3);
    for (const row of rows) {
      const wado = `${web}/studies/${row["0020000D"]!.Value[0]}/series/${row["0020000E"]!.Value[0]}/instances/${row["00080018"]!.Value[0]}`;
      const get = async (base: string) => {
        const res = await request(`${base}${wado}`, {
          headers: { accept: "application/dicom; transfer-syntax=*", "want-repr-digest": "crc32c=10" },
        });
        assert.equal(res.statusCode, 200);
        return { bytes: Buffer.from(await res.body.arrayBuffer()), digest: res.headers["repr-digest"] };
      };
      const a = await get(rendered.url);
      const b1 = await get(stored.url);
      const b2 = await get(stored.url);
      assert.ok(a.bytes.length > 20000 * 0.9, `an instance of about --instance-bytes (${a.bytes.length})`);
      assert.ok(b1.bytes.equals(a.bytes) && b2.bytes.equals(a.bytes), "the same bytes, every time");
      assert.equal(a.digest, `crc32c=:${crc32cBase64(a.bytes)}:`);
      assert.equal(b1.digest, a.digest);
      assert.equal(b2.digest, a.digest, "the kept digest is the body's");
    }
  } finally {
    assert.equal(await rendered.stop(), 0);
    assert.equal(await stored.stop(), 0);
  }
});
