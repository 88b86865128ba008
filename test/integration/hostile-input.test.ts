import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { runCli } from "../../src/cli/run-cli.ts";
import { SIIM, SIIM_FHIR_STORE, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { formatPath } from "../../src/config/schema.ts";
import { listFiles, prng, requireBuiltCli, seedFor, spawnCli, STACK_TRACE } from "../support/chaos.ts";
import { credentialedEndpointArgs } from "../support/fake-adc.ts";

/**
 * Hostile input suite (issue #6):
 *  (a) ≥ 200 seeded mutations of config/demo.json → `plan --config FILE` exits 0 (still valid) or 2
 *      naming the JSON path of what is wrong; never 1, never a stack trace;
 *  (b) a tiny HTTP server answering the listing, operations.get and the export POST with bad JSON,
 *      wrong types, missing fields, HTML, empty bodies → `mirror`, `operations wait` and `export`
 *      exit non-zero with one clear line, writing nothing into the destination;
 *  (c) across all of it, with real (fake) Application Default Credentials, the access token never
 *      appears in stdout, stderr, the report or the state file — also when a server echoes it or a
 *      failing URL carries `?access_token=`.
 */

const TOKEN = "ya29.HOSTILE-FAKE-TOKEN-never-print-9c1e";
const BUCKET = "hostile-bucket";
const DATASET = "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax";
const OP = `${DATASET}/operations/4242`;
const DOC_REF = SIIM.documentReference;

let tmp: string;
let demo: Record<string, unknown>;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-hostile-"));
  demo = JSON.parse(await readFile(path.resolve("config/demo.json"), "utf8")) as Record<string, unknown>;
});
after(async () => {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function cli(argv: string[], cwd = tmp): Promise<CliResult> {
  let stdout = "";
  let stderr = "";
  const out = new PassThrough().on("data", (c) => (stdout += String(c)));
  const err = new PassThrough().on("data", (c) => (stderr += String(c)));
  const code = await runCli(argv, {
    stdout: out,
    stderr: err,
    env: process.env,
    cwd,
    signal: AbortSignal.timeout(30_000),
  });
  return { code, stdout, stderr };
}

/** The failure is one `error: …` line (optionally followed by `  fix: …`), with no stack trace. */
function assertOneLineError(r: CliResult, what: string): string {
  const text = `${r.stdout}\n${r.stderr}`;
  assert.doesNotMatch(text, STACK_TRACE, `${what}: stack trace\n${text}`);
  const lines = r.stderr.split("\n");
  const at = lines.findIndex((l) => l.startsWith("error: "));
  assert.ok(at >= 0, `${what}: no 'error:' line\n${r.stderr}`);
  for (const l of lines.slice(at + 1))
    assert.ok(l === "" || l.startsWith("  fix: "), `${what}: the error message runs over several lines:\n${r.stderr}`);
  assert.ok(lines[at]!.length < 1200, `${what}: error line of ${lines[at]!.length} chars`);
  return lines[at]!;
}

// ---------------------------------------------------------------------------------------------
// (a) config fuzzing
// ---------------------------------------------------------------------------------------------

type Path = Array<string | number>;
interface Mutation {
  readonly kind: string;
  /** Where the problem is (its JSON path, as the messages print it). */
  readonly at: string;
  /** True when the result certainly violates the schema. */
  readonly invalid: boolean;
}

const get = (o: unknown, p: Path): unknown =>
  p.reduce<unknown>((x, k) => (x as Record<string | number, unknown>)?.[k], o);
const parentOf = (o: unknown, p: Path) => get(o, p.slice(0, -1)) as Record<string | number, unknown>;

/** Every value's path in the demo config (objects, arrays and leaves), root excluded. */
function allPaths(o: unknown, prefix: Path = []): Path[] {
  if (typeof o !== "object" || o === null) return [];
  const out: Path[] = [];
  for (const [k, v] of Object.entries(o)) {
    const p = [...prefix, Array.isArray(o) ? Number(k) : k];
    out.push(p, ...allPaths(v, p));
  }
  return out;
}

const REQUIRED = new Set([
  "project",
  "bucket",
  "bucket.name",
  "exports",
  "exports[0]",
  "exports[1]",
  "exports[0].store",
  "exports[0].prefix",
  "exports[0].dest",
  "exports[1].store",
  "exports[1].prefix",
  "exports[1].dest",
  "annotations.store",
  "annotations.documentReference",
  "annotations.dest",
]);
const BAD_BUCKETS = [
  "",
  "ab",
  "My_Bucket",
  "-leading",
  "trailing-",
  "a..b",
  "192.168.10.1",
  "goog-data",
  "my-google-bucket",
  "x".repeat(64),
  "with space",
  "ünïcode",
  "a/b",
  `${"a".repeat(63)}.${"b".repeat(64)}`,
];
const BAD_STORES = [
  "projects/p",
  "projects/p/locations/l/datasets/d/fhirStores/f",
  "projects//locations/l/datasets/d/dicomStores/s",
  "projects/p/locations/l/datasets/d/dicomStores/s/extra",
  "../../etc/passwd",
  "projects/p/locations/l/datasets/d/dicomStores/",
  " projects/p/locations/l/datasets/d/dicomStores/s",
  "projects/p/locations/l/datasets/d/dicomStores/s?x=1",
];
const BAD_NAMES: Record<string, string[]> = {
  project: ["X", "my_project", "1project", "p", "project-", "a".repeat(31)],
  serviceAgent: [
    "someone@example.com",
    "service-abc@gcp-sa-healthcare.iam.gserviceaccount.com",
    "serviceAccount:service-1@gcp-sa-healthcare.iam.gserviceaccount.com",
  ],
  "annotations.documentReference": ["", "a/b", "x".repeat(65), "id with space"],
  "exports[0].prefix": ["", "../x", "/abs", "a//b", "a/", ".hcexport", "x/.hcx-tmp-1", "nul\u0000byte"],
  "mirror.concurrency": ["32", "0", "-1", "1.5", "1000000000"],
  "endpoints.storage": ["ftp://x", "not a url", "http://"],
  "bucket.storageClass": ["standard", "GLACIER", ""],
};

function wrongValueFor(v: unknown, random: () => number): unknown {
  const options: unknown[] = [
    42,
    -1.5,
    true,
    false,
    "a string",
    [],
    [1, "two"],
    {},
    { nested: { deeper: [null] } },
    1e308,
    "",
  ];
  for (;;) {
    const c = options[Math.floor(random() * options.length)];
    if (typeof c !== typeof v || Array.isArray(c) !== Array.isArray(v)) return c;
  }
}

/** Applies one seeded mutation to `cfg` (in place); returns what it did. Deep values go through `deep`. */
function mutate(
  cfg: Record<string, unknown>,
  random: () => number,
  deep: Map<string, string>,
  avoid: Set<string>,
): Mutation | undefined {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const paths = allPaths(cfg).filter((p) => !avoid.has(String(p[0])));
  if (paths.length === 0) return undefined;
  const kind = pick([
    "wrongType",
    "unknownKey",
    "badBucket",
    "badStore",
    "badName",
    "missing",
    "null",
    "huge",
    "deep",
    "dupPrefix",
  ] as const);
  switch (kind) {
    case "wrongType": {
      const p = pick(paths);
      parentOf(cfg, p)[p.at(-1)!] = wrongValueFor(get(cfg, p), random);
      return { kind, at: formatPath(p), invalid: true };
    }
    case "unknownKey": {
      const objects: Path[] = [
        [],
        ...paths.filter((p) => typeof get(cfg, p) === "object" && get(cfg, p) !== null && !Array.isArray(get(cfg, p))),
      ];
      const p = pick(objects);
      const key = pick([
        "colour",
        "bucekt",
        "__proto__x",
        "constructor",
        "Project",
        "extra field",
        "\u202eevil",
        "toString",
      ]);
      ((get(cfg, p) as Record<string, unknown> | undefined) ?? cfg)[key] = pick([1, "x", null, {}, []]);
      avoid.add(key); // an unknown key is reported as such, not by what is inside it
      return { kind, at: p.length === 0 ? "(config)" : formatPath(p), invalid: true };
    }
    case "badBucket": {
      // An earlier mutation of `bucket` (e.g. made it an array) leaves no `bucket.name` to name.
      if (avoid.has("bucket") || typeof cfg["bucket"] !== "object" || cfg["bucket"] === null) return undefined;
      (cfg["bucket"] as Record<string, unknown>)["name"] = pick(BAD_BUCKETS);
      return { kind, at: "bucket.name", invalid: true };
    }
    case "badStore": {
      const where = pick([
        ["exports", 0, "store"],
        ["exports", 1, "store"],
        ["annotations", "store"],
      ] as Path[]);
      const parent = parentOf(cfg, where);
      if (avoid.has(String(where[0])) || typeof parent !== "object" || parent === null) return undefined;
      // A FHIR store is a bad DICOM store and the other way round.
      const swapped = where[0] === "annotations" ? SIIM_TRAIN_STORE : SIIM_FHIR_STORE;
      parent[where.at(-1)!] = pick([...BAD_STORES.filter((x) => !x.includes("/fhirStores/")), swapped]);
      return { kind, at: formatPath(where), invalid: true };
    }
    case "badName": {
      const field = pick(Object.keys(BAD_NAMES));
      const p: Path = field
        .split(/\.|\[(\d+)\]\.?/)
        .filter((s) => s !== undefined && s !== "")
        .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
      let parent = parentOf(cfg, p) as Record<string | number, unknown> | undefined;
      if (parent === undefined && p.length === 2) parent = (cfg[p[0] as string] = {}) as Record<string, unknown>;
      if (typeof parent !== "object" || parent === null || Array.isArray(parent) !== (typeof p.at(-1) === "number"))
        return undefined;
      const bad = pick(BAD_NAMES[field]!);
      parent[p.at(-1)!] = field === "mirror.concurrency" && bad !== "32" ? Number(bad) : bad;
      return { kind, at: field, invalid: true };
    }
    case "missing": {
      const p = pick(paths);
      const parent = parentOf(cfg, p);
      if (Array.isArray(parent)) return undefined;
      delete parent[p.at(-1)!];
      return { kind, at: formatPath(p), invalid: REQUIRED.has(formatPath(p)) };
    }
    case "null": {
      const p = pick(paths);
      parentOf(cfg, p)[p.at(-1)!] = null;
      return { kind, at: formatPath(p), invalid: true };
    }
    case "huge": {
      const strings = paths.filter((p) => typeof get(cfg, p) === "string");
      if (strings.length === 0) return undefined;
      const p = pick(strings);
      const unit = pick(["x", "é", "../", "\u{1F600}", "a-"]);
      parentOf(cfg, p)[p.at(-1)!] = unit.repeat(Math.floor((10_000 + random() * 500_000) / unit.length));
      // Huge text is fine where any text is (a comment, a location); the rest must be refused.
      return { kind, at: formatPath(p), invalid: false };
    }
    case "deep": {
      const p = pick(paths);
      const depth = pick([100, 5_000, 200_000]);
      const token = `__DEEP_${deep.size}__`;
      deep.set(
        token,
        random() < 0.5 ? `${"[".repeat(depth)}${"]".repeat(depth)}` : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`,
      );
      parentOf(cfg, p)[p.at(-1)!] = token;
      return { kind, at: formatPath(p), invalid: true };
    }
    case "dupPrefix": {
      const ex = cfg["exports"];
      if (avoid.has("exports")) return undefined;
      if (
        !Array.isArray(ex) ||
        typeof ex[0] !== "object" ||
        typeof ex[1] !== "object" ||
        ex[0] === null ||
        ex[1] === null
      )
        return undefined;
      (ex[1] as Record<string, unknown>)["prefix"] = (ex[0] as Record<string, unknown>)["prefix"];
      return {
        kind,
        at: "exports[1].prefix",
        invalid: typeof (ex[0] as Record<string, unknown>)["prefix"] === "string",
      };
    }
  }
}

/** Whole-file oddities: not JSON, not an object, empty, a BOM, a huge file. */
const RAW_FILES: Array<[string, string]> = [
  ["empty file", ""],
  ["not JSON", "{ project: 'x' }"],
  ["truncated", '{"project": "my-demo-project", "bucket": {'],
  ["null", "null"],
  ["array", "[]"],
  ["number", "42"],
  ["string", '"config"'],
  ["BOM + JSON", `\uFEFF${JSON.stringify({ project: "my-demo-project" })}`],
  ["trailing garbage", '{"project": "my-demo-project"} }'],
  ["duplicate keys", '{"project": "my-demo-project", "project": 5}'],
  ["deep array", `${"[".repeat(300_000)}${"]".repeat(300_000)}`],
  ["NUL bytes", '{"project": "my\u0000project"}'],
  ["binary", "\u0000\u0001\u0002\u00ff"],
];

describe("(a) config fuzzing: plan exits 0 or 2 naming the JSON path, never crashes", () => {
  test("≥ 200 seeded mutations of config/demo.json", { timeout: 50_000 }, async (t) => {
    const seed = seedFor("config_fuzz");
    t.diagnostic(`seed ${seed} (replay: HCX_CONFIG_FUZZ_SEED=${seed})`);
    const random = prng(seed);
    const dir = path.join(tmp, "fuzz");
    await mkdir(dir, { recursive: true });
    const counts = { tried: 0, valid: 0, invalid: 0, mutations: 0 };
    const byKind: Record<string, number> = {};
    let longest = 0;
    const check = async (file: string, what: string, expectInvalid: boolean, paths: string[]) => {
      counts.tried++;
      const r = await cli(["plan", "--config", file], dir);
      assert.ok(r.code === 0 || r.code === 2, `${what}: exit ${r.code}\n${r.stderr.slice(0, 2000)}`);
      assert.doesNotMatch(`${r.stdout}${r.stderr}`, STACK_TRACE, `${what}: stack trace`);
      if (r.code === 0) {
        assert.ok(!expectInvalid, `${what}: accepted an invalid config`);
        counts.valid++;
        return;
      }
      counts.invalid++;
      longest = Math.max(longest, r.stderr.length);
      assertOneLineProblemList(r.stderr, what);
      for (const p of paths)
        assert.ok(
          r.stderr.includes(`  ${p}: `) || r.stderr.includes(`  ${p}`),
          `${what}: the message does not name ${p}\n${r.stderr.slice(0, 3000)}`,
        );
    };

    for (const [name, text] of RAW_FILES) {
      const file = path.join(dir, `raw-${counts.tried}.json`);
      await writeFile(file, text);
      const r = await cli(["plan", "--config", file], dir);
      counts.tried++;
      counts.invalid++;
      byKind["raw"] = (byKind["raw"] ?? 0) + 1;
      assert.equal(r.code, 2, `${name}: exit ${r.code}\n${r.stderr.slice(0, 2000)}`);
      assert.doesNotMatch(r.stderr, STACK_TRACE, name);
      assert.match(r.stderr, /not valid JSON|\(config\)|problem/, name);
    }
    while (counts.tried < 240) {
      const cfg = structuredClone(demo);
      const deep = new Map<string, string>();
      const muts: Mutation[] = [];
      const howMany = random() < 0.7 ? 1 : 2 + Math.floor(random() * 2);
      const avoid = new Set<string>();
      for (let i = 0; i < howMany * 3 && muts.length < howMany; i++) {
        const m = mutate(cfg, random, deep, avoid);
        if (m === undefined) continue;
        muts.push(m);
        avoid.add(m.at.split(/[.[]/)[0]!); // later mutations keep off this subtree, so its path stays meaningful
      }
      if (muts.length === 0) continue;
      counts.mutations += muts.length;
      for (const m of muts) byKind[m.kind] = (byKind[m.kind] ?? 0) + 1;
      let text = JSON.stringify(cfg, null, 1);
      for (const [token, value] of deep) text = text.replace(JSON.stringify(token), value);
      const file = path.join(dir, `m-${counts.tried}.json`);
      await writeFile(file, text);
      const what = `mutation #${counts.tried} [${muts.map((m) => `${m.kind}@${m.at}`).join(", ")}] (${file})`;
      // The duplicate-prefix rule runs only once everything else is valid, so it is only looked for alone.
      const named = muts.filter((m) => m.invalid && (m.kind !== "dupPrefix" || muts.length === 1));
      await check(
        file,
        what,
        named.length > 0,
        named.map((m) => m.at),
      );
      await rm(file);
    }
    assert.ok(counts.tried >= 200);
    t.diagnostic(
      `figures: ${counts.tried} configs tried (${counts.mutations} mutations + ${RAW_FILES.length} raw files): ${counts.invalid} refused with exit 2, ${counts.valid} still valid (exit 0), 0 crashes; by kind ${JSON.stringify(byKind)}; longest error output ${longest} chars`,
    );
  });
});

/** A config error: `error: FILE has N problem(s):` then one `  path: message` line per problem. */
function assertOneLineProblemList(stderr: string, what: string): void {
  const lines = stderr.split("\n").filter((l) => l !== "");
  assert.match(lines[0] ?? "", /^error: /, what);
  for (const l of lines.slice(1))
    assert.match(l, /^ {2}(\S.*: |fix: )/, `${what}: unexpected line ${JSON.stringify(l.slice(0, 200))}`);
}

// ---------------------------------------------------------------------------------------------
// (b) + (c) malformed server responses, with credentials
// ---------------------------------------------------------------------------------------------

type Responder = (req: IncomingMessage, res: ServerResponse) => void;
const json =
  (status: number, body: unknown, headers: Record<string, string> = {}): Responder =>
  (_req, res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(typeof body === "string" ? body : JSON.stringify(body));
  };
const raw =
  (status: number, contentType: string, body: string): Responder =>
  (_req, res) => {
    res.writeHead(status, { "content-type": contentType });
    res.end(body);
  };
const HTML =
  '<!DOCTYPE html>\n<html>\n<head><title>Sign in</title></head>\n<body>\n  <form action="/login">Please sign in</form>\n</body>\n</html>\n';

/** What the hostile server answers; each route can be swapped per case. */
const routes = {
  list: json(200, { items: [] }) as Responder,
  media: raw(200, "application/octet-stream", "") as Responder,
  operation: json(200, {
    name: OP,
    done: true,
    response: { "@type": "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse" },
    metadata: { counter: { success: "1" } },
  }) as Responder,
  exportPost: json(200, { name: OP }) as Responder,
  operationsList: json(200, { operations: [] }) as Responder,
  fhir: json(200, {
    resourceType: "DocumentReference",
    id: DOC_REF,
    content: [{ attachment: { contentType: "text/csv", url: "", title: "train-rle.csv" } }],
  }) as Responder,
  attachment: json(403, { error: { code: 403, message: "signed URL expired" } }) as Responder,
};
const defaults = { ...routes };
let server: Server;
let base = "";
const seenAuth = new Set<string>();

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", "http://x");
  const p = url.pathname;
  const auth = req.headers.authorization;
  if (auth !== undefined) seenAuth.add(auth);
  req.resume();
  if (p === "/token") return json(200, { access_token: TOKEN, expires_in: 3600, token_type: "Bearer" })(req, res);
  if (p === "/storage/v1/b" && req.method === "POST")
    return json(409, {
      error: {
        code: 409,
        message: "Your previous request to create the named bucket succeeded and you already own it.",
        errors: [{ reason: "conflict", message: "you already own it" }],
      },
    })(req, res);
  if (p === `/storage/v1/b/${BUCKET}/iam`)
    return json(200, {
      kind: "storage#policy",
      etag: "CAE=",
      version: 1,
      bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${SIIM.serviceAgent}`] }],
    })(req, res);
  if (p === `/storage/v1/b/${BUCKET}/o`) return routes.list(req, res);
  if (p.startsWith(`/download/storage/v1/b/${BUCKET}/o/`)) return routes.media(req, res);
  if (p === `/v1/${SIIM_TRAIN_STORE}:export`) return routes.exportPost(req, res);
  if (p === `/v1/${DATASET}/operations`) return routes.operationsList(req, res);
  if (p.startsWith(`/v1/${DATASET}/operations/`)) return routes.operation(req, res);
  if (p === `/v1/${SIIM_FHIR_STORE}/fhir/DocumentReference/${DOC_REF}`) return routes.fhir(req, res);
  if (p === "/files/train-rle.csv") return routes.attachment(req, res);
  json(404, { error: { code: 404, message: `no route ${req.method} ${p}` } })(req, res);
}

describe("(b)+(c) malformed server responses, with credentials that must never leak", () => {
  let endpoint: string;
  const outputs: string[] = [];
  before(async () => {
    server = createServer(route);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
    // 0.0.0.0 reaches the loopback server; as plain endpoints (not --emulator) they get credentials.
    endpoint = `http://0.0.0.0:${port}`;
    const creds = path.join(tmp, "adc.json");
    await writeFile(
      creds,
      JSON.stringify({
        type: "external_account_authorized_user",
        audience: "//iam.googleapis.com/locations/global/workforcePools/p/providers/x",
        client_id: "cid",
        client_secret: "csecret",
        refresh_token: "rtoken",
        token_url: `${base}/token`,
        token_info_url: `${base}/token`,
      }),
    );
    process.env["GOOGLE_APPLICATION_CREDENTIALS"] = creds;
    // Without a project in the environment google-auth-library spends ~0.9 s per client asking gcloud for one.
    process.env["GOOGLE_CLOUD_PROJECT"] ??= "hostile-test-project";
  });
  after(async () => {
    delete process.env["GOOGLE_APPLICATION_CREDENTIALS"];
    if (process.env["GOOGLE_CLOUD_PROJECT"] === "hostile-test-project") delete process.env["GOOGLE_CLOUD_PROJECT"];
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
  });

  const leakCheck = (text: string, what: string) => {
    outputs.push(text);
    assert.ok(
      !text.includes(TOKEN) && !text.includes("HOSTILE-FAKE-TOKEN"),
      `${what}: access token leaked\n${text.slice(0, 3000)}`,
    );
    assert.ok(!text.includes("csecret") && !text.includes("rtoken"), `${what}: credential file secrets leaked`);
  };

  /** One hostile answer for one command: non-zero, one clear line, nothing in DIR, no token. */
  async function hostile(
    name: string,
    set: Partial<typeof routes>,
    argv: (dir: string) => string[],
    expect: RegExp,
  ): Promise<CliResult> {
    Object.assign(routes, defaults, set);
    const dir = path.join(tmp, "dest", name.replace(/\W+/g, "-"));
    const r = await cli([...argv(dir), ...credentialedEndpointArgs(endpoint)]);
    Object.assign(routes, defaults);
    assert.notEqual(r.code, 0, `${name}: exit 0\n${r.stdout}\n${r.stderr}`);
    const line = assertOneLineError(r, name);
    assert.match(line.replace(/^error: /, ""), expect, `${name}: unclear message`);
    leakCheck(`${r.stdout}\n${r.stderr}`, name);
    const written = (await listFiles(dir)).filter((f) => !f.startsWith(".hcexport/"));
    assert.deepEqual(written, [], `${name}: wrote into the destination`);
    return r;
  }

  const listingCases: Array<[string, Responder, RegExp]> = [
    ["listing: bad JSON", json(200, '{"items":[{"name":"train/a.dcm"'), /not JSON/],
    ["listing: items is a string", json(200, { items: "nope" }), /malformed object listing: "items"/],
    [
      "listing: item of wrong types",
      json(200, { items: [{ name: 7, size: true, generation: null }] }),
      /malformed object listing entry/,
    ],
    [
      "listing: item without size/generation",
      json(200, { items: [{ name: "train/a.dcm" }] }),
      /malformed object listing entry/,
    ],
    [
      "listing: negative size",
      json(200, { items: [{ name: "train/a.dcm", size: "-5", generation: "1" }] }),
      /malformed size/,
    ],
    ["listing: 200 with HTML", raw(200, "text/html", HTML), /not JSON/],
    ["listing: empty body", raw(200, "application/json", ""), /malformed object listing: .*empty body/],
    ["listing: null", json(200, "null"), /malformed object listing: expected a JSON object/],
    ["listing: an array", json(200, "[1,2]"), /malformed object listing: expected a JSON object/],
    [
      "listing: nextPageToken of the wrong type",
      json(200, { items: [], nextPageToken: 7 }),
      /"nextPageToken" is number/,
    ],
    [
      "listing: the same nextPageToken forever",
      json(200, { items: [], nextPageToken: "again" }),
      /same nextPageToken again/,
    ],
    ["listing: 404 with an HTML page", raw(404, "text/html", HTML), /HTTP 404/],
  ];
  for (const [name, responder, expect] of listingCases) {
    test(`mirror — ${name}`, { timeout: 20_000 }, async () => {
      await hostile(name, { list: responder }, (dir) => ["mirror", `gs://${BUCKET}/train`, dir, "--delete"], expect);
    });
  }

  test(
    "mirror — an empty or malformed listing never deletes local files with --delete",
    { timeout: 20_000 },
    async () => {
      const dir = path.join(tmp, "dest", "keep-local");
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, "precious.dcm"), "local data");
      for (const responder of [raw(200, "application/json", ""), json(200, "null"), json(200, { items: "nope" })]) {
        Object.assign(routes, defaults, { list: responder });
        const r = await cli(["mirror", `gs://${BUCKET}/train`, dir, "--delete", ...credentialedEndpointArgs(endpoint)]);
        Object.assign(routes, defaults);
        assert.notEqual(r.code, 0, r.stderr);
        assert.equal(
          await readFile(path.join(dir, "precious.dcm"), "utf8"),
          "local data",
          `deleted by a malformed listing:\n${r.stderr}`,
        );
        leakCheck(`${r.stdout}\n${r.stderr}`, "delete guard");
      }
    },
  );

  const operationCases: Array<[string, Responder, RegExp]> = [
    ["operation: bad JSON", json(200, '{"name": "x", "done": tr'), /not JSON/],
    ["operation: name of the wrong type", json(200, { name: 5, done: true }), /malformed response \("name"/],
    ["operation: 200 with HTML", raw(200, "text/html; charset=utf-8", HTML), /not JSON/],
    ["operation: empty body", raw(200, "application/json", ""), /malformed response \(empty body\)/],
    ["operation: an array", json(200, "[]"), /malformed response/],
    ["operation: done is a string", json(200, { name: OP, done: "yes" }), /"done" is not a boolean/],
    ["operation: error is null", json(200, { name: OP, done: true, error: null }), /malformed/],
    [
      "operation: error of wrong types",
      json(200, { name: OP, done: true, error: { code: "seven", message: 7 } }),
      /malformed/,
    ],
    ["operation: done without result or error", json(200, { name: OP, done: true }), /without a result or an error/],
    [
      "operation: metadata is a string",
      json(200, { name: OP, done: true, metadata: "x", response: {} }),
      /"metadata" is not an object/,
    ],
  ];
  for (const [name, responder, expect] of operationCases) {
    test(`operations wait — ${name}`, { timeout: 20_000 }, async () => {
      await hostile(name, { operation: responder }, () => ["operations", "wait", OP, "--timeout", "5"], expect);
    });
  }

  const exportCases: Array<[string, Responder, RegExp]> = [
    ["export POST: bad JSON", json(200, '{"name": '), /not JSON/],
    ["export POST: name of the wrong type", json(200, { name: 42 }), /no operation name/],
    ["export POST: 200 with HTML", raw(200, "text/html", HTML), /not JSON/],
    ["export POST: empty body", raw(200, "application/json", ""), /no operation name/],
    ["export POST: missing name", json(200, { done: false }), /no operation name/],
    ["export POST: name that is not an operation", json(200, { name: "../../etc/passwd" }), /malformed operation name/],
  ];
  for (const [name, responder, expect] of exportCases) {
    test(`export — ${name}`, { timeout: 20_000 }, async () => {
      await hostile(
        name,
        { exportPost: responder },
        () => ["export", SIIM_TRAIN_STORE, `gs://${BUCKET}/train`],
        expect,
      );
    });
  }

  test(
    "(c) a server that echoes the bearer token in its error, and a failing URL with ?access_token=: token never printed, reported or saved",
    { timeout: 30_000 },
    async () => {
      // The listing answers 401 and quotes the Authorization header back (a misconfigured proxy).
      await hostile(
        "echoing 401",
        {
          list: (req, res) =>
            json(401, { error: { code: 401, message: `Invalid credentials: ${req.headers.authorization ?? ""}` } })(
              req,
              res,
            ),
        },
        (dir) => ["mirror", `gs://${BUCKET}/train`, dir],
        /HTTP 401/,
      );
      await hostile(
        "echoing 400 text",
        {
          operation: (req, res) =>
            raw(400, "text/plain", `bad request, you sent ${req.headers.authorization ?? ""}`)(req, res),
        },
        () => ["operations", "wait", OP],
        /HTTP 400/,
      );

      // A whole `run` that fails at the annotations, whose attachment URL carries ?access_token=.
      const dir = path.join(tmp, "run-token");
      await mkdir(dir, { recursive: true });
      Object.assign(routes, defaults, {
        fhir: json(200, {
          resourceType: "DocumentReference",
          id: DOC_REF,
          content: [
            {
              attachment: {
                contentType: "text/csv",
                url: `${endpoint}/files/train-rle.csv?access_token=${TOKEN}&x=1`,
                title: "train-rle.csv",
              },
            },
          ],
        }),
      });
      const cfg = path.join(dir, "c.json");
      await writeFile(
        cfg,
        JSON.stringify({
          ...demo,
          bucket: { name: BUCKET },
          serviceAgent: SIIM.serviceAgent,
          exports: [{ store: SIIM_TRAIN_STORE, prefix: "train", dest: "./out/train" }],
          annotations: { store: SIIM_FHIR_STORE, documentReference: DOC_REF, dest: "./out/annotations" },
          stateDir: "./out/.hcexport",
        }),
      );
      const report = path.join(dir, "report.json");
      for (const extra of [[], ["--json"], ["--verbose"]]) {
        const r = await cli(["run", cfg, ...credentialedEndpointArgs(endpoint), "--report", report, ...extra], dir);
        assert.notEqual(r.code, 0, r.stderr);
        if (!extra.includes("--json"))
          assert.match(assertOneLineError(r, "run"), /train-rle\.csv\?access_token=REDACTED/);
        else assert.match(r.stdout, /train-rle\.csv\?access_token=REDACTED/);
        leakCheck(`${r.stdout}\n${r.stderr}`, `run ${extra.join(" ")}`);
        leakCheck(await readFile(report, "utf8"), "report");
        leakCheck(await readFile(path.join(dir, "out", ".hcexport", "state.json"), "utf8"), "state file");
      }
      Object.assign(routes, defaults);
      assert.ok(
        [...seenAuth].some((a) => a.includes(TOKEN)),
        "the commands really sent the token",
      );
    },
  );

  test(
    "(b)+(c) the built CLI as a process: the same failures, no crash, no stack trace, no token",
    { timeout: 30_000 },
    async () => {
      const bin = requireBuiltCli();
      const env = {
        GOOGLE_APPLICATION_CREDENTIALS: path.join(tmp, "adc.json"),
        GOOGLE_CLOUD_PROJECT: "hostile-test-project",
        NODE_COMPILE_CACHE: path.join(os.tmpdir(), "hcx-node-compile-cache"),
      };
      const cases: Array<[string, Partial<typeof routes>, string[]]> = [
        [
          "mirror, HTML listing",
          { list: raw(200, "text/html", HTML) },
          ["mirror", `gs://${BUCKET}/train`, path.join(tmp, "dest", "proc-mirror")],
        ],
        [
          "operations wait, null error",
          { operation: json(200, { name: OP, done: true, error: null }) },
          ["operations", "wait", OP, "--timeout", "5"],
        ],
        [
          "export, empty body",
          { exportPost: raw(200, "application/json", "") },
          ["export", SIIM_TRAIN_STORE, `gs://${BUCKET}/train`, "--wait"],
        ],
      ];
      await Promise.all(
        cases.map(async ([name, set, argv]) => {
          Object.assign(routes, set);
          const r = await spawnCli(bin, [...argv, ...credentialedEndpointArgs(endpoint)], { cwd: tmp, env });
          assert.ok(r.code !== 0 && r.code !== null, `${name}: exit ${r.code} ${r.signal}\n${r.stderr}`);
          assertOneLineError({ code: r.code, stdout: r.stdout, stderr: r.stderr }, name);
          leakCheck(`${r.stdout}\n${r.stderr}`, name);
        }),
      );
      Object.assign(routes, defaults);
      assert.deepEqual(
        (await listFiles(path.join(tmp, "dest", "proc-mirror"))).filter((f) => !f.startsWith(".hcexport/")),
        [],
      );
    },
  );

  after(() => {
    process.stderr.write(
      `# hostile-input: ${outputs.length} command outputs checked for the token, ${seenAuth.size} distinct Authorization headers seen\n`,
    );
  });
});
