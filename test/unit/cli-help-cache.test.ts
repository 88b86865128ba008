import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import yargs from "yargs";
import { withoutHelpCache } from "../../src/cli/run-cli.ts";
import { cliIn } from "../support/cli.ts";

interface Usage {
  help: () => string;
}
const usageOf = (p: object) =>
  (p as { getInternalMethods(): { getUsageInstance(): Usage } }).getInternalMethods().getUsageInstance();

/** Runs `go` through a parser shaped like runCli's; how many times yargs laid out a help text. */
async function helpLayouts(skipCache: boolean): Promise<{ layouts: number; ran: string[] }> {
  const ran: string[] = [];
  const parser = yargs(["go", "x"])
    .option("quiet", { type: "boolean" })
    .command({
      command: "go <what>",
      describe: "a command",
      builder: (y) => y.option("fast", { type: "boolean", describe: "an option" }),
      handler: async (args) => {
        await Promise.resolve();
        ran.push(String(args["what"]));
      },
    })
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    });
  if (skipCache) withoutHelpCache(parser);
  const usage = usageOf(parser);
  const help = usage.help.bind(usage);
  let layouts = 0;
  usage.help = () => {
    layouts++;
    return help();
  };
  await parser.parseAsync();
  return { layouts, ran };
}

test("yargs lays out the command's help as its handler starts, unless withoutHelpCache", async () => {
  // The precondition: this yargs does cache (else the test below proves nothing).
  assert.deepEqual(await helpLayouts(false), { layouts: 1, ran: ["x"] });
  assert.deepEqual(await helpLayouts(true), { layouts: 0, ran: ["x"] });
});

test("withoutHelpCache leaves anything without yargs' internals alone", () => {
  assert.doesNotThrow(() => withoutHelpCache({}));
  const odd = { getInternalMethods: () => ({ getUsageInstance: () => ({ cacheHelpMessage: 1 }) }) };
  withoutHelpCache(odd);
  assert.equal(odd.getInternalMethods().getUsageInstance().cacheHelpMessage, 1);
});

test("a command's --help and a usage error read as before", async () => {
  const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
  const help = spawnSync(process.execPath, [main, "mirror", "--help"], { encoding: "utf8" });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^hcexport mirror <source> <dir>/);
  assert.match(help.stdout, /--concurrency/);
  const bad = await cliIn(["mirror", "gs://b/p"], { cwd: process.cwd() });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Not enough non-option arguments/);
});
