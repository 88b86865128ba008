import { describe, test, after, before } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SIIM, SIIM_FHIR_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { startPty, ptySkip, type PtyExit, type PtySession } from "../support/pty.ts";
import { demoConfig, RESULT_BOUND_MS, SPINNER_FRAME } from "../support/pty-fixtures.ts";
import { requireBuiltCli, spawnCli } from "../support/chaos.ts";

/**
 * Issue #10, finding 1: on a real terminal (tmux, 120×30) every command family exits within 1 s of
 * printing its result, with the documented code — the `iam` spinner once spun forever after exit 3.
 * Finding 2: remote text with terminal controls reaches the screen escaped.
 */
const skip = ptySkip("pty-exits");
/** The screen's lines joined: a long line wraps at 120 columns. */
const unwrap = (screen: string) => screen.replace(/\n/g, "");
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const HOSTILE = "\u001b[2J\u001b]0;pwned\u0007denied \u009b31mred";

describe("a finished command exits at once on a terminal", { skip }, () => {
  let cloud: LocalCloud;
  let hostile: Server;
  let hostileUrl = "";
  const dirs: string[] = [];
  const tmp = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), "hcx-pty-"));
    dirs.push(d);
    return d;
  };
  before(async () => {
    cloud = await startLocalCloud({ dataset: { train: 4, test: 2, instanceBytes: 1024 } });
    // A server whose every answer is an error (and an operation error) carrying terminal controls.
    hostile = createServer((req, res) => {
      req.resume();
      const op = "projects/p/locations/l/datasets/d/operations/1";
      if (req.method === "POST" && req.url?.includes(":export")) return void res.end(JSON.stringify({ name: op }));
      if (req.url?.endsWith("/fhir/DocumentReference/evil"))
        return void res.end(
          JSON.stringify({ resourceType: "DocumentReference", id: "evil", status: "current", description: HOSTILE }),
        );
      if (req.url?.endsWith(op))
        return void res.end(JSON.stringify({ name: op, done: true, error: { code: 7, message: HOSTILE } }));
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: 400, message: HOSTILE, status: "INVALID_ARGUMENT" } }));
    });
    await new Promise<void>((r) => hostile.listen(0, "127.0.0.1", r));
    hostileUrl = `http://127.0.0.1:${(hostile.address() as { port: number }).port}`;
  });
  after(async () => {
    await cloud?.close();
    hostile?.close();
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  /** Runs `args` in a pty; asserts the exit follows the line matching `result` within 1 s. */
  async function exitsAfter(args: string[], cwd: string, result: RegExp, code: number): Promise<PtyExit> {
    const t: PtySession = await startPty(args, { cwd });
    try {
      await t.waitFor(result, 20_000);
      const seen = performance.now();
      const exit = await t.exited(seen - t.startedAt + 5_000);
      assert.equal(exit.code, code, exit.history);
      assert.ok(
        exit.at - seen < RESULT_BOUND_MS,
        `exited ${Math.round(exit.at - seen)} ms after its result:\n${exit.history}`,
      );
      assert.doesNotMatch(exit.screen, SPINNER_FRAME, `a spinner is left on the last frame:\n${exit.screen}`);
      assert.notEqual(await t.title(), "pwned");
      return exit;
    } finally {
      await t.close();
    }
  }

  test("run: a missing binding exits 3, the iam step marked ✖ on the last frame", async () => {
    const dir = await tmp();
    const cfg = await demoConfig(dir, { grantIam: false });
    const exit = await exitsAfter(["run", cfg, "--emulator", cloud.baseUrl], dir, /fix: run 'hcexport iam grant/, 3);
    // Lanes run concurrently (annotations from the start), so other lines may sit between; a line of
    // 120 columns may wrap inside the role name.
    assert.match(exit.screen, /✔ bucket: .*\n(?:.*\n)*✖ iam: .*roles\/storage\.obje\n?ctAdmin/);
    assert.match(exit.screen, /\nerror: gs:\/\/hcexport-demo-bucket: /);
    assert.doesNotMatch(exit.screen, /✔ export|✔ mirror/);
  });

  test("export --wait: a failed operation exits 4", async () => {
    const dir = await tmp();
    cloud.store.createBucket({ name: "pty-nobinding", projectNumber: "1" });
    const exit = await exitsAfter(
      ["export", SIIM_TRAIN_STORE, "gs://pty-nobinding/x", "--wait", "--emulator", cloud.baseUrl],
      dir,
      /^error: /m,
      4,
    );
    assert.match(exit.history, /PERMISSION_DENIED|permission/i);
  });

  test("mirror: a refused name exits 5, and the name's escapes are shown, not obeyed", async () => {
    const dir = await tmp();
    cloud.store.createBucket({ name: "pty-mirror", projectNumber: "1" });
    cloud.store.putObject("pty-mirror", "p/ok.txt", Buffer.from("fine"), "text/plain");
    cloud.store.putObject("pty-mirror", `p/${HOSTILE}.txt`, Buffer.from("x"), "text/plain");
    const exit = await exitsAfter(
      ["mirror", "gs://pty-mirror/p", path.join(dir, "m"), "--emulator", cloud.baseUrl],
      dir,
      /^error: /m,
      5,
    );
    assert.match(unwrap(exit.history), /refused ".*\\u001b\[2J\\u001b\]0;pwned\\u0007denied \\u009b31mred\.txt"/);
  });

  test("dicomweb pull: a store that does not exist ends the command with its error", async () => {
    const dir = await tmp();
    const missing = SIIM_TRAIN_STORE.replace("dicom-images-train", "no-such-store");
    const exit = await exitsAfter(
      ["dicomweb", "pull", missing, path.join(dir, "p"), "--emulator", cloud.baseUrl],
      dir,
      /^error: /m,
      1,
    );
    assert.match(exit.history, /no-such-store/);
  });

  test("fhir get: a resource that does not exist exits 1", async () => {
    const dir = await tmp();
    const exit = await exitsAfter(
      ["fhir", "get", SIIM_FHIR_STORE, "DocumentReference/nope", "--emulator", cloud.baseUrl],
      dir,
      /^error: /m,
      1,
    );
    assert.match(exit.history, /404/);
  });

  test("a server's error message and an operation's error reach the screen escaped (finding 2)", async () => {
    const dir = await tmp();
    const fhir = await exitsAfter(
      ["fhir", "get", SIIM_FHIR_STORE, `DocumentReference/${SIIM.documentReference}`, "--emulator", hostileUrl],
      dir,
      /^error: /m,
      1,
    );
    // Had ESC[2J reached the terminal the line would be gone; had OSC 0 reached it, the title would be "pwned".
    assert.match(unwrap(fhir.screen), /HTTP 400: \\u001b\[2J\\u001b\]0;pwned\\u0007denied \\u009b31mred/);
    const op = await exitsAfter(
      ["export", SIIM_TRAIN_STORE, "gs://pty-bucket/p", "--wait", "--emulator", hostileUrl],
      dir,
      /^error: /m,
      4,
    );
    assert.match(unwrap(op.screen), /\\u001b\[2J\\u001b\]0;pwned\\u0007denied \\u009b31mred/);
  });

  test("FHIR text reaches the screen escaped, and the NDJSON carries it escaped but intact", async () => {
    const dir = await tmp();
    const args = ["fhir", "get", SIIM_FHIR_STORE, "DocumentReference/evil", "--emulator", hostileUrl];
    const t = await startPty(args, { cwd: dir });
    const exit = await t.exited(20_000).finally(() => t.close());
    assert.equal(exit.code, 0, exit.history);
    assert.match(unwrap(exit.screen), /"description": "\\u001b\[2J\\u001b\]0;pwned\\u0007denied \\u009b31mred"/);
    const json = await spawnCli(requireBuiltCli(), [...args, "--json"], { cwd: dir });
    assert.equal(json.code, 0, json.stderr);
    assert.doesNotMatch(json.stdout + json.stderr, RAW_CONTROL);
    const result = JSON.parse(json.stdout.trim().split("\n").at(-1)!) as { resource: { description: string } };
    assert.equal(result.resource.description, HOSTILE);
  });
});
