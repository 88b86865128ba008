import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { applyOverrides, loadConfig } from "../../src/config/load.ts";
import { validateConfig } from "../../src/config/schema.ts";
import { UsageError } from "../../src/core/errors.ts";
import { runCli } from "../../src/cli/run-cli.ts";

const siim = JSON.parse(await readFile(new URL("../../config/siim.json", import.meta.url), "utf8")) as Record<
  string,
  unknown
>;

describe("config validation", () => {
  test("the shipped configs are valid; defaults fill the rest", async () => {
    const demo = JSON.parse(await readFile(new URL("../../config/demo.json", import.meta.url), "utf8")) as unknown;
    assert.deepEqual(validateConfig(siim).problems, []);
    assert.deepEqual(validateConfig(demo).problems, []);
    const minimal = validateConfig({
      project: "my-project",
      bucket: { name: "my-bucket" },
      exports: [{ store: (siim["exports"] as Array<{ store: string }>)[0]!.store, prefix: "train", dest: "out" }],
    });
    assert.equal(minimal.config?.stateDir, ".hcexport");
    assert.deepEqual(minimal.config?.mirror, { concurrency: 32, delete: false });
    assert.equal(minimal.config?.grantIam, false);
    assert.equal(minimal.config?.bucket.location, "US");
  });

  test("three mistakes → all three reported, each with its JSON path", () => {
    const bad = structuredClone(siim) as {
      bucket: { name: string };
      exports: Array<{ store: string }>;
      grantIam: unknown;
    };
    bad.bucket.name = "My_Bucket";
    bad.exports[1]!.store = "projects/x/dicomStores/y";
    bad.grantIam = "yes";
    const { config, problems } = validateConfig(bad);
    assert.equal(config, undefined);
    assert.deepEqual(problems.map((p) => p.path).sort(), ["bucket.name", "exports[1].store", "grantIam"]);
    assert.match(
      problems.find((p) => p.path === "exports[1].store")!.message,
      /"projects\/x\/dicomStores\/y" is not a store name/,
    );
    assert.match(problems.find((p) => p.path === "bucket.name")!.message, /lowercase/);
  });

  test("unknown keys, duplicate prefixes and a fhirStore given as a DICOM store are errors", () => {
    const bad = structuredClone(siim) as Record<string, unknown> & {
      exports: Array<{ store: string; prefix: string }>;
    };
    bad["bucekt"] = {};
    bad.exports[1]!.prefix = "train";
    bad.exports[0]!.store = bad.exports[0]!.store.replace("dicomStores/dicom-images-train", "fhirStores/f");
    const paths = validateConfig(bad)
      .problems.map((p) => p.path)
      .sort();
    assert.deepEqual(paths, ["(config)", "exports[0].store", "exports[1].prefix"]);
  });

  test("loadConfig: one UsageError (exit 2) listing every problem; paths resolve against the config's directory", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-config-"));
    try {
      const bad = structuredClone(siim) as {
        project: string;
        bucket: { name: string };
        exports: Array<{ store: string }>;
      };
      bad.project = "X";
      bad.bucket.name = "ab";
      bad.exports[0]!.store = "nope";
      await writeFile(path.join(dir, "bad.json"), JSON.stringify(bad));
      const err = await loadConfig(path.join(dir, "bad.json")).catch((e: unknown) => e);
      assert.ok(err instanceof UsageError);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, /3 problems/);
      for (const p of ["project:", "bucket.name:", "exports[0].store:"])
        assert.ok(err.message.includes(p), `${p} in ${err.message}`);

      await writeFile(path.join(dir, "ok.json"), JSON.stringify({ ...siim, stateDir: undefined }));
      const ok = await loadConfig(path.join(dir, "ok.json"));
      assert.equal(ok.stateDir, path.join(dir, ".hcexport"));
      assert.equal(ok.config.exports[0]!.dest, path.resolve(dir, "../siim/train"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("precedence: flags > env (HCEXPORT_*) > file > defaults", () => {
  test("applyOverrides is pure and wins over the file", () => {
    const file = { project: "file-project", grantIam: false, mirror: { concurrency: 4, delete: true } };
    const before = JSON.stringify(file);
    const out = applyOverrides(file, { project: "flag-project", grantIam: true, concurrency: 64 }) as typeof file;
    assert.deepEqual(out, { project: "flag-project", grantIam: true, mirror: { concurrency: 64, delete: true } });
    assert.equal(JSON.stringify(file), before);
    assert.deepEqual(applyOverrides(file, {}), file, "no overrides: the file stands");
  });

  test("through the CLI: env beats the file, a flag beats env", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-prec-"));
    try {
      const cfg = path.join(dir, "c.json");
      await writeFile(cfg, JSON.stringify({ ...siim, grantIam: false }));
      const plan = async (argv: string[], env: NodeJS.ProcessEnv) => {
        const stdout = new PassThrough();
        const chunks: Buffer[] = [];
        stdout.on("data", (c: Buffer) => chunks.push(c));
        // yargs reads HCEXPORT_* from process.env itself (main.ts passes process.env as io.env too).
        const saved = { ...process.env };
        Object.assign(process.env, env);
        let code: number;
        try {
          code = await runCli(["plan", cfg, "--json", ...argv], {
            stdout,
            stderr: new PassThrough(),
            env: process.env,
            cwd: dir,
            signal: new AbortController().signal,
          });
        } finally {
          for (const k of Object.keys(env))
            if (saved[k] === undefined) delete process.env[k];
            else process.env[k] = saved[k];
        }
        assert.equal(code, 0, Buffer.concat(chunks).toString());
        const result = Buffer.concat(chunks)
          .toString()
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { kind: string; plan?: Array<{ key: string; describe: string }> })
          .find((l) => l.kind === "result")!;
        return result.plan!.find((p) => p.key === "iam")!.describe;
      };
      assert.match(await plan([], {}), /exit 3 if missing/, "file: grantIam false");
      assert.match(await plan([], { HCEXPORT_GRANT_IAM: "true" }), /grant if missing/, "env beats file");
      assert.match(
        await plan(["--no-grant-iam"], { HCEXPORT_GRANT_IAM: "true" }),
        /exit 3 if missing/,
        "flag beats env",
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
