import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { Agent, request } from "undici";
import { runCli } from "../../src/cli/run-cli.ts";
import { SIIM } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { resolveEndpoints } from "../../src/gcp/endpoints.ts";
import { storageAdmin } from "../../src/gcp/storage-admin.ts";
import { ensureExportRole } from "../../src/pipeline/steps.ts";
import { EXPORT_ROLE } from "../../src/workflow/iam-policy.ts";
import { prng, seedFor } from "../support/chaos.ts";

/**
 * IAM race suite (issue #6): while `hcexport iam grant` runs, 20 other writers add their own
 * bindings to the same bucket policy with etag read-modify-writes (retrying on 412). Nothing may be
 * lost: every writer's binding and the service agent's objectAdmin binding are there at the end.
 * Concurrent grants of the same member give one binding, never duplicates.
 */

const WRITERS = 20;
const BINDINGS_PER_WRITER = 3;
const ROUNDS = Number(process.env["HCX_IAM_ROUNDS"] ?? 4);
const MEMBER = `serviceAccount:${SIIM.serviceAgent}`;

interface Binding {
  role: string;
  members: string[];
  condition?: { title?: string; expression: string };
}
interface Policy {
  etag: string;
  version: number;
  bindings: Binding[];
}

let cloud: LocalCloud;
const dispatcher = new Agent({ connections: 64 });
const stats = { writes: 0, conflicts: 0, grants: 0 };

before(async () => {
  cloud = await startLocalCloud({});
});
after(async () => {
  await dispatcher.close();
  await cloud?.close();
});

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await request(`${cloud.baseUrl}/storage/v1${path}`, {
    method: method as "GET",
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    dispatcher,
  });
  return { status: res.statusCode, json: await res.body.json() };
}
const readPolicy = async (bucket: string) =>
  (await api("GET", `/b/${bucket}/iam?optionsRequestedPolicyVersion=3`)).json as Policy;

async function createBucket(name: string): Promise<void> {
  const r = await api("POST", `/b?project=my-project`, {
    name,
    iamConfiguration: { uniformBucketLevelAccess: { enabled: true } },
  });
  assert.equal(r.status, 200, JSON.stringify(r.json));
}

/**
 * The binding writer `w` adds in its step `k`. Three shapes, so every kind of edit races the
 * grant: a member added to a role binding everyone shares, a binding of its own role+member, and a
 * conditional binding (which forces policy version 3).
 */
function bindingOf(w: number, k: number): Binding {
  const member = `user:writer-${w}-${k}@example.com`;
  if (k % 3 === 0) return { role: "roles/storage.objectViewer", members: [member] };
  if (k % 3 === 1) return { role: `roles/storage.legacyBucketReader`, members: [member] };
  return {
    role: "roles/storage.objectViewer",
    members: [member],
    condition: { title: `w${w}k${k}`, expression: `resource.name.startsWith("projects/_/buckets/b/objects/w${w}/")` },
  };
}

/** Adds `want` with an etag read-modify-write, retrying on 412 (as gcloud does), never dropping anything. */
async function addBinding(bucket: string, want: Binding, random: () => number): Promise<void> {
  for (;;) {
    const p = await readPolicy(bucket);
    const bindings = structuredClone(p.bindings);
    const same = bindings.find(
      (b) => b.role === want.role && JSON.stringify(b.condition) === JSON.stringify(want.condition),
    );
    if (same !== undefined) same.members = [...same.members, ...want.members.filter((m) => !same.members.includes(m))];
    else bindings.push(structuredClone(want));
    const version = bindings.some((b) => b.condition !== undefined) ? 3 : p.version;
    const r = await api("PUT", `/b/${bucket}/iam`, { etag: p.etag, version, bindings });
    if (r.status === 200) {
      stats.writes++;
      return;
    }
    assert.equal(r.status, 412, `writer PUT: ${JSON.stringify(r.json)}`);
    stats.conflicts++;
    if (random() < 0.3) await new Promise((res) => setImmediate(res)); // a little jitter, no real backoff: maximal contention
  }
}

function holds(p: Policy, want: Binding): boolean {
  return p.bindings.some(
    (b) =>
      b.role === want.role &&
      JSON.stringify(b.condition) === JSON.stringify(want.condition) &&
      want.members.every((m) => b.members.includes(m)),
  );
}

/** `hcexport iam grant` in-process (the real command: yargs, endpoints, the SDK-backed adapter). */
async function cliGrant(bucket: string): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = "";
  let stdout = "";
  const err = new PassThrough().on("data", (c) => (stderr += String(c)));
  const out = new PassThrough().on("data", (c) => (stdout += String(c)));
  stats.grants++;
  const code = await runCli(
    ["iam", "grant", `gs://${bucket}`, "--service-agent", SIIM.serviceAgent, "--emulator", cloud.baseUrl],
    { stdout: out, stderr: err, env: {}, cwd: process.cwd(), signal: new AbortController().signal },
  );
  return { code, stderr, stdout };
}

describe("IAM read-modify-write under contention", () => {
  test(
    `iam grant racing ${WRITERS} writers × ${BINDINGS_PER_WRITER} bindings, ${ROUNDS} rounds: nothing lost`,
    { timeout: 45_000 },
    async (t) => {
      const seed = seedFor("iam");
      t.diagnostic(`seed ${seed} (replay: HCX_IAM_SEED=${seed})`);
      const random = prng(seed);
      for (let round = 0; round < ROUNDS; round++) {
        const bucket = `iam-race-${round}`;
        await createBucket(bucket);
        const wanted: Binding[] = [];
        let started = 0;
        let landed = 0;
        let grantStarted: () => void = () => {};
        const grantGate = new Promise<void>((r) => (grantStarted = r));
        // Start the grant at a seeded moment in the storm (after 1–20 writes landed), not before it.
        const startAfter = 1 + Math.floor(random() * WRITERS);
        const writers = Array.from({ length: WRITERS }, async (_, w) => {
          for (let k = 0; k < BINDINGS_PER_WRITER; k++) {
            const b = bindingOf(w, k);
            wanted.push(b);
            started++;
            await addBinding(bucket, b, random);
            if (++landed === startAfter) grantStarted();
          }
        });
        await grantGate;
        const grant = await cliGrant(bucket);
        await Promise.all(writers);
        assert.equal(grant.code, 0, `iam grant under contention (round ${round}): ${grant.stderr}`);
        assert.match(grant.stdout, /granted roles\/storage\.objectAdmin/);
        const p = await readPolicy(bucket);
        assert.equal(started, WRITERS * BINDINGS_PER_WRITER);
        for (const b of wanted) assert.ok(holds(p, b), `round ${round}: lost ${JSON.stringify(b)}`);
        const admin = p.bindings.filter((b) => b.role === EXPORT_ROLE && b.condition === undefined);
        assert.equal(admin.length, 1);
        assert.deepEqual(admin[0]!.members, [MEMBER]);
        assert.equal(p.version, 3, "conditional bindings keep policy version 3");
      }
      const s = cloud.requests.summary();
      t.diagnostic(
        `figures: ${ROUNDS} rounds, ${stats.writes} writer PUTs landed after ${stats.conflicts} 412 conflicts; ${stats.grants} grants; emulator saw ${s.byStatus["412"] ?? 0} 412s in total (the grant's own retries included)`,
      );
    },
  );

  test(
    "concurrent grants of the same member (CLI and library, racing writers) → exactly one binding, no duplicate member",
    { timeout: 30_000 },
    async (t) => {
      const random = prng(seedFor("iam") ^ 0x5eed);
      const bucket = "iam-race-same-member";
      await createBucket(bucket);
      const buckets = storageAdmin(resolveEndpoints({ emulator: cloud.baseUrl }), "my-project");
      const writers = Array.from({ length: 10 }, async (_, w) => {
        for (let k = 0; k < 2; k++) await addBinding(bucket, bindingOf(100 + w, k), random);
      });
      const grants = await Promise.all([
        cliGrant(bucket),
        cliGrant(bucket),
        ...Array.from({ length: 6 }, () =>
          ensureExportRole(buckets, bucket, SIIM.serviceAgent, true).then((granted) => ({
            code: 0,
            stdout: granted ? "granted" : "already",
            stderr: "",
          })),
        ),
      ]);
      await Promise.all(writers);
      for (const g of grants) assert.equal(g.code, 0, g.stderr);
      const granted = grants.filter((g) => /granted/.test(g.stdout)).length;
      assert.equal(
        granted,
        1,
        `exactly one grant wrote the binding, the others saw it (${grants.map((g) => g.stdout.trim()).join(" | ")})`,
      );
      const p = await readPolicy(bucket);
      const withMember = p.bindings.filter((b) => b.members.includes(MEMBER));
      assert.equal(withMember.length, 1, JSON.stringify(p.bindings));
      assert.equal(withMember[0]!.role, EXPORT_ROLE);
      assert.equal(withMember[0]!.members.filter((m) => m === MEMBER).length, 1, "member listed once");
      for (let w = 0; w < 10; w++)
        for (let k = 0; k < 2; k++) assert.ok(holds(p, bindingOf(100 + w, k)), `lost writer ${w} binding ${k}`);
      t.diagnostic(
        `figures: 8 concurrent grants (2 CLI, 6 library) + 10 writers; ${granted} wrote, ${grants.length - granted} found it present`,
      );
    },
  );
});
