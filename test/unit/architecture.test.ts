import { test } from "node:test";
import assert from "node:assert/strict";
import { ESLint } from "eslint";

// The layering rules of DESIGN §7 are enforced by eslint (eslint.config.js); this proves the rules
// fire, so that a config change cannot silently switch them off.
const eslint = new ESLint({ cwd: process.cwd() });

async function violations(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message);
}

test("src/mirror and src/workflow may not import Google SDKs", async () => {
  for (const dir of ["mirror", "workflow", "pipeline", "dicomweb", "core"]) {
    const v = await violations(
      `src/${dir}/probe.ts`,
      `import { Storage } from "@google-cloud/storage";\nimport { GoogleAuth } from "google-auth-library";\nexport const x = [Storage, GoogleAuth];\n`,
    );
    assert.equal(v.length, 2, `src/${dir}: ${v.join("; ")}`);
  }
});

test("nothing outside src/cli imports src/cli, yargs or ora", async () => {
  const v = await violations(
    "src/gcp/probe.ts",
    `import { runCli } from "../cli/run-cli.ts";\nimport ora from "ora";\nexport const x = [runCli, ora];\n`,
  );
  assert.equal(v.length, 2, v.join("; "));
});

test("src/gcp may import Google SDKs and src/cli may import anything", async () => {
  assert.deepEqual(
    await violations(
      "src/gcp/probe.ts",
      `import { Storage } from "@google-cloud/storage";\nexport const x = Storage;\n`,
    ),
    [],
  );
  assert.deepEqual(
    await violations(
      "src/cli/probe.ts",
      `import ora from "ora";\nimport { Storage } from "@google-cloud/storage";\nexport const x = [ora, Storage];\n`,
    ),
    [],
  );
});
