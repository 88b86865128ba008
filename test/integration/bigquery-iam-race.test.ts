import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "undici";
import { SIIM } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { bigqueryAdmin } from "../../src/gcp/bigquery.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { grantBigQueryAccess, missingBigQueryRoles } from "../../src/workflow/bigquery-access.ts";
import { prng, seedFor } from "../support/chaos.ts";

/**
 * Project IAM race: while hcexport grants the service agent its two BigQuery roles (through the
 * real adapter, over HTTP), 12 other writers add their own bindings to the same project policy by
 * etag read-modify-write, retrying on Resource Manager's 409 ABORTED. Nothing may be lost, and
 * concurrent grants of the same member never duplicate it.
 */

const P = "race-project";
const WRITERS = 12;
const MEMBER = `serviceAccount:${SIIM.serviceAgent}`;
let cloud: LocalCloud;
let client: HttpClient;

before(async () => {
  cloud = await startLocalCloud({});
  client = new HttpClient();
});
after(async () => {
  await client.close();
  await cloud.close();
});

interface Policy {
  etag: string;
  version: number;
  bindings: { role: string; members: string[] }[];
}
async function rm(op: "getIamPolicy" | "setIamPolicy", body: unknown): Promise<{ status: number; json: Policy }> {
  const res = await request(`${cloud.baseUrl}/v1/projects/${P}:${op}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Policy };
}

test("grants under contention: every writer's binding and both roles survive, 409s were hit and retried", async () => {
  const random = prng(seedFor("bigquery-iam-race"));
  let conflicts = 0;
  const writer = async (w: number) => {
    for (;;) {
      const p = (await rm("getIamPolicy", {})).json;
      await new Promise((r) => setTimeout(r, Math.floor(random() * 5)));
      p.bindings.push({ role: `roles/custom.writer${w}`, members: [`user:w${w}@example.com`] });
      const r = await rm("setIamPolicy", { policy: p });
      if (r.status === 200) return;
      assert.equal(r.status, 409);
      conflicts++;
    }
  };
  const admin = bigqueryAdmin(client, cloud.baseUrl, cloud.baseUrl);
  const target = { project: P, dataset: "d", serviceAgent: SIIM.serviceAgent };
  const [a, b] = await Promise.all([
    grantBigQueryAccess(admin, target, true, { attempts: 50 }),
    grantBigQueryAccess(admin, target, true, { attempts: 50 }),
    ...Array.from({ length: WRITERS }, (_, w) => writer(w)),
  ]);
  const final = (await rm("getIamPolicy", {})).json;
  for (let w = 0; w < WRITERS; w++)
    assert.ok(
      final.bindings.some((x) => x.role === `roles/custom.writer${w}` && x.members.includes(`user:w${w}@example.com`)),
      `writer ${w}'s binding was lost`,
    );
  assert.deepEqual(missingBigQueryRoles({ ...final }, MEMBER), []);
  for (const role of ["roles/bigquery.dataEditor", "roles/bigquery.jobUser"]) {
    const holders = final.bindings.filter((x) => x.role === role).flatMap((x) => x.members);
    assert.deepEqual(holders, [MEMBER], `${role}: exactly one grant of the member`);
  }
  assert.equal((a as string[]).length + (b as string[]).length, 2, "one grant added both roles, the other found them");
  assert.ok(
    final.bindings.some((x) => x.role === "roles/owner"),
    "the project's own bindings are kept",
  );
  assert.ok(conflicts > 0, "the writers really raced (some 409s)");
});
