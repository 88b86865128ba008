// npm runs `prepare` before `npm pack`, after a local `npm install`/`npm ci`, and when it installs
// hcexport from git: it builds dist/ with the project's own TypeScript (tsc -p tsconfig.build.json).
//
// A global install from git (`npm install -g git+…`) hits npm/cli#8440: npm hands its `global`
// setting on to the clone's install, so the clone's own dependencies never land beside it and the
// build finds no TypeScript. Then install them locally first (dev included, scripts off).
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const require = createRequire(new URL("../package.json", import.meta.url));
const resolvable = (id) => {
  try {
    require.resolve(id);
    return true;
  } catch {
    return false;
  }
};

if (!resolvable("typescript/package.json") || !resolvable("@types/node/package.json")) {
  const npmCli = process.env["npm_execpath"];
  if (npmCli === undefined) throw new Error("prepare: TypeScript is missing; run `npm ci` first");
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (/^npm_config_(global|location|prefix)$/i.test(key)) delete env[key];
  process.stderr.write("prepare: dependencies missing (npm/cli#8440); installing them in the package first\n");
  execFileSync(
    process.execPath,
    [npmCli, "install", "--no-save", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--global=false"],
    { cwd: root, env, stdio: "inherit" },
  );
}
execFileSync(process.execPath, [require.resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"], {
  cwd: root,
  stdio: "inherit",
});
