import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { listFiles, requireBuiltCli, spawnCli } from "../support/chaos.ts";
import { credentialedEndpointArgs, noAdcEnv, startFakeAdc } from "../support/fake-adc.ts";

/**
 * Issue #10 findings 3 and 4, through the built CLI: where a Google token goes. The servers record
 * whether each request carried an Authorization header; the token must reach only https Google
 * hosts and the exact origin of a configured endpoint, and never anything under --emulator.
 */

const TOKEN = "ya29.FAKE-DESTINATION-TOKEN-3b9e1d";
const STORE = "projects/p/locations/l/datasets/d/fhirStores/f";
let tmp: string;
let bin: string;
let adc: Awaited<ReturnType<typeof startFakeAdc>>;
let env: Record<string, string>;

before(async () => {
  bin = requireBuiltCli();
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-cred-dest-"));
  adc = await startFakeAdc(TOKEN, tmp);
  env = { ...noAdcEnv(tmp), GOOGLE_APPLICATION_CREDENTIALS: adc.file };
});
after(async () => {
  await adc.close();
  await rm(tmp, { recursive: true, force: true });
});

/** A self-signed certificate for 127.0.0.1 (openssl), or undefined when openssl is missing. */
function selfSigned(dir: string): { key: string; cert: string } | undefined {
  const key = path.join(dir, "key.pem");
  const cert = path.join(dir, "cert.pem");
  try {
    execFileSync(
      "openssl",
      [
        ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"],
        ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
      ],
      { stdio: "ignore" },
    );
    return { key, cert };
  } catch {
    return undefined;
  }
}

describe("finding 3: fhir get --attachment sends the token only to https Google hosts and exact configured origins", () => {
  test("a plain-http attachment on the host (and port) of the https storage endpoint gets no token", async (t) => {
    const tls = selfSigned(tmp);
    if (tls === undefined) {
      if (process.env["CI"]) assert.fail("openssl is required in CI (it makes the test's TLS certificate)");
      process.stderr.write("\n!!! credential-destinations: SKIPPED: openssl is not installed\n");
      t.skip("openssl missing");
      return;
    }
    const seen: Array<{ server: string; path: string; authorization: string | undefined }> = [];
    const record = (server: string) => (req: IncomingMessage, res: ServerResponse) => {
      seen.push({ server, path: req.url ?? "", authorization: req.headers.authorization });
      if ((req.url ?? "").startsWith("/files/")) {
        res.writeHead(200, { "content-type": "text/csv" });
        res.end(`ImageId,EncodedPixels\n${server}-image,-1\n`);
        return;
      }
      res.writeHead(200, { "content-type": "application/fhir+json" });
      res.end(JSON.stringify(doc));
    };
    // The attachment server speaks plain HTTP; the FHIR (Healthcare) endpoint is HTTPS.
    const plain = createHttpServer(record("plain"));
    const secure = createHttpsServer(
      { key: await readFile(tls.key), cert: await readFile(tls.cert) },
      record("secure"),
    );
    await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => secure.listen(0, "127.0.0.1", r));
    const plainPort = (plain.address() as AddressInfo).port;
    const securePort = (secure.address() as AddressInfo).port;
    const doc = {
      resourceType: "DocumentReference",
      id: "doc",
      content: [
        // Same host and port as the configured https storage endpoint, but http: no token.
        { attachment: { url: `http://127.0.0.1:${plainPort}/files/a.csv`, title: "a.csv" } },
        // The exact origin of the configured Healthcare endpoint: the token is allowed.
        { attachment: { url: `https://127.0.0.1:${securePort}/files/b.csv`, title: "b.csv" } },
      ],
    };
    try {
      const out = path.join(tmp, "attachments");
      const r = await spawnCli(
        bin,
        [
          ...["fhir", "get", STORE, "DocumentReference/doc", "--attachment", out],
          ...["--healthcare-endpoint", `https://127.0.0.1:${securePort}`],
          ...["--storage-endpoint", `https://127.0.0.1:${plainPort}`],
        ],
        { cwd: tmp, env: { ...env, NODE_EXTRA_CA_CERTS: tls.cert } },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        (await listFiles(out)).filter((f) => !f.startsWith(".")),
        ["a.csv", "b.csv"],
      );
      const at = (server: string, p: string) => seen.find((s) => s.server === server && s.path.startsWith(p));
      assert.equal(at("secure", "/v1/")?.authorization, `Bearer ${TOKEN}`, "the FHIR read carried the token");
      assert.equal(at("secure", "/files/b.csv")?.authorization, `Bearer ${TOKEN}`, "exact configured origin");
      assert.equal(at("plain", "/files/a.csv")?.authorization, undefined, "the token went over plain HTTP");
    } finally {
      plain.closeAllConnections();
      secure.closeAllConnections();
      await new Promise((r) => plain.close(r));
      await new Promise((r) => secure.close(r));
    }
  });
});

describe("finding 4: --emulator never sends credentials, whatever the host", () => {
  let emu: RunningEmulator;
  const BUCKET = "cred-dest-bucket";
  let hostsPreload: string;
  before(async () => {
    emu = await startEmulator({});
    emu.store.createBucket({ name: BUCKET, projectNumber: "1" });
    for (let i = 0; i < 3; i++) emu.store.putObject(BUCKET, `p/o${i}.txt`, Buffer.from(`object ${i}\n`), "text/plain");
    // A named host without /etc/hosts: the child resolves names listed in HCX_TEST_HOSTS itself.
    hostsPreload = path.join(tmp, "hosts.mjs");
    await writeFile(
      hostsPreload,
      `import dns from "node:dns";
const map = Object.fromEntries((process.env.HCX_TEST_HOSTS ?? "").split(",").filter(Boolean).map((p) => p.split("=")));
const original = dns.lookup;
dns.lookup = function (host, options, callback) {
  const cb = typeof options === "function" ? options : callback;
  const address = map[host];
  if (address === undefined) return original.call(this, host, options, callback);
  process.nextTick(() => (typeof options === "object" && options?.all ? cb(null, [{ address, family: 4 }]) : cb(null, address, 4)));
  return {};
};
`,
    );
  });
  after(() => emu.close());

  const mirrorVia = async (name: string, endpointArgs: string[], extraEnv: Record<string, string> = {}) => {
    const from = emu.requests.entries.length;
    const tokens = adc.tokenRequests();
    const dest = path.join(tmp, `mirror-${name}`);
    const r = await spawnCli(bin, ["mirror", `gs://${BUCKET}/p`, dest, ...endpointArgs], {
      cwd: tmp,
      env: { ...env, ...extraEnv },
    });
    const requests = emu.requests.entries.slice(from);
    return { r, dest, requests, tokenRequests: adc.tokenRequests() - tokens };
  };

  const port = () => String(emu.port);
  const cases: Array<[string, () => string, Record<string, string>]> = [
    ["0.0.0.0", () => `http://0.0.0.0:${port()}`, {}],
    ["IPv4-mapped loopback", () => `http://[::ffff:127.0.0.1]:${port()}`, {}],
    [
      "a named host (docker-compose style)",
      () => `http://emulator.test:${port()}`,
      { HCX_TEST_HOSTS: "emulator.test=127.0.0.1" },
    ],
  ];
  for (const [name, url, extra] of cases)
    test(`--emulator ${name}: files land, no request carries Authorization, ADC never loaded`, async () => {
      const preload: Record<string, string> =
        extra["HCX_TEST_HOSTS"] === undefined ? {} : { NODE_OPTIONS: `--import=${hostsPreload}` };
      const { r, dest, requests, tokenRequests } = await mirrorVia(name, ["--emulator", url()], {
        ...extra,
        ...preload,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        (await listFiles(dest)).filter((f) => !f.startsWith(".hcexport")),
        ["o0.txt", "o1.txt", "o2.txt"],
      );
      assert.ok(requests.length >= 4, `the emulator saw the run (${requests.length} requests)`);
      assert.deepEqual(
        requests.filter((q) => q.authorized).map((q) => `${q.method} ${q.path}`),
        [],
        "requests with an Authorization header",
      );
      assert.equal(tokenRequests, 0, "a token was minted");
    });

  test("control: the same host as plain endpoints with --allow-insecure-auth does carry the token, with a warning", async () => {
    const { r, requests, tokenRequests } = await mirrorVia(
      "insecure-allowed",
      credentialedEndpointArgs(`http://0.0.0.0:${port()}`),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /warning: Google credentials would travel in clear text \(plain http:\/\/\) to http:\/\/0\.0\.0\.0:/,
    );
    assert.ok(requests.length > 0 && requests.every((q) => q.authorized), "every request carried the token");
    assert.ok(tokenRequests > 0);
    assert.ok(!r.stderr.includes(TOKEN) && !r.stdout.includes(TOKEN));
  });

  test("a plain-http non-loopback endpoint without --allow-insecure-auth: exit 2 before any request, says why", async () => {
    const { r, requests, tokenRequests } = await mirrorVia("insecure-refused", [
      "--storage-endpoint",
      `http://0.0.0.0:${port()}`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /refusing to send credentials: .*clear text .*http:\/\/0\.0\.0\.0:/);
    assert.match(r.stderr, /--allow-insecure-auth/);
    assert.equal(requests.length, 0, "nothing reached the endpoint");
    assert.equal(tokenRequests, 0, "no token was minted");
  });

  test("HCEXPORT_ALLOW_INSECURE_AUTH=1 is the environment form of the flag", async () => {
    const { r, requests } = await mirrorVia("insecure-env", ["--storage-endpoint", `http://0.0.0.0:${port()}`], {
      HCEXPORT_ALLOW_INSECURE_AUTH: "1",
      HCEXPORT_HEALTHCARE_ENDPOINT: `http://0.0.0.0:${port()}`,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /warning: .*clear text/);
    assert.ok(requests.every((q) => q.authorized));
    assert.ok(existsSync(path.join(tmp, "mirror-insecure-env", "o0.txt")));
  });
});
