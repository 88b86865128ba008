import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { Clock } from "../../src/core/clock.ts";
import { UsageError } from "../../src/core/errors.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { resolveEndpoints } from "../../src/gcp/endpoints.ts";
import { healthcareApi } from "../../src/gcp/healthcare.ts";
import { storageAdmin, type BucketAdmin } from "../../src/gcp/storage-admin.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { ensureExportRole } from "../../src/pipeline/steps.ts";
import { startExportOnce, type StartExportEvent } from "../../src/pipeline/start-export.ts";

const noWait: Clock = { now: () => Date.now(), sleep: async () => {} };

describe("workflow adapters against the local cloud", () => {
  let cloud: LocalCloud;
  let client: HttpClient;
  before(async () => {
    cloud = await startLocalCloud({ dataset: { train: 3, test: 1 }, exportInstancesPerSecond: 1000 });
    client = new HttpClient({
      retry: { retries: 2, backoff: { initialMs: 1, maxMs: 2, multiplier: 1, jitter: "none" } },
    });
  });
  after(async () => {
    await client.close();
    await cloud.close();
  });

  test("bucket ensure: created, then 409-and-ours = success, 409-and-someone-else's = a clear usage error", async () => {
    const endpoints = resolveEndpoints({ emulator: cloud.baseUrl });
    const mine = storageAdmin(endpoints, "my-project");
    assert.deepEqual(
      await mine.ensureBucket({
        name: "owned-bucket",
        project: "my-project",
        location: "us-central1",
        uniformAccess: true,
      }),
      { created: true },
    );
    assert.deepEqual(await mine.ensureBucket({ name: "owned-bucket", project: "my-project" }), { created: false });
    assert.equal(cloud.store.getBucket("owned-bucket")?.uniformBucketLevelAccess, true);
    const theirs = storageAdmin(endpoints, "another-project");
    const err = await theirs
      .ensureBucket({ name: "owned-bucket", project: "another-project" })
      .catch((e: unknown) => e);
    assert.ok(err instanceof UsageError, String(err));
    assert.match(err.message, /taken by someone else/);
    assert.match(err.hint!, /choose another bucket name/);
  });

  test("IAM grant through @google-cloud/storage: a concurrent edit (412) is retried and kept", async () => {
    const endpoints = resolveEndpoints({ emulator: cloud.baseUrl });
    const admin = storageAdmin(endpoints, "my-project");
    await admin.ensureBucket({ name: "race-bucket", project: "my-project" });
    let raced = false;
    const racing: BucketAdmin = {
      ...admin,
      async setPolicy(bucket, policy) {
        if (!raced) {
          raced = true;
          const current = await admin.getPolicy(bucket);
          await admin.setPolicy(bucket, {
            ...current,
            bindings: [
              ...(current.bindings ?? []),
              { role: "roles/storage.objectViewer", members: ["user:racer@example.com"] },
            ],
          });
        }
        return admin.setPolicy(bucket, policy);
      },
    };
    assert.equal(await ensureExportRole(racing, "race-bucket", SIIM.serviceAgent, true), true);
    const final = await admin.getPolicy("race-bucket");
    const roles = (final.bindings ?? []).map((b) => `${b.role}=${(b.members ?? []).join(",")}`);
    assert.ok(roles.includes("roles/storage.objectViewer=user:racer@example.com"), "the concurrent edit survived");
    assert.ok(roles.includes(`roles/storage.objectAdmin=serviceAccount:${SIIM.serviceAgent}`));
  });

  test("the export POST is not retried blindly: failures that never reached the export start nothing; then exactly one", async () => {
    const hc = healthcareApi(client, cloud.baseUrl);
    const events: StartExportEvent[] = [];
    const before = cloud.healthcare.operations().length;
    cloud.faults = { ...cloud.faults, rate503: 1, pathFilter: ":export" };
    const since = new Date().toISOString();
    await assert.rejects(
      startExportOnce(hc, SIIM_TRAIN_STORE, "gs://owned-bucket/t", {
        since,
        known: new Set(),
        maybeStarted: false,
        attempts: 3,
        clock: noWait,
        onEvent: (e) => events.push(e),
      }),
      /503/,
    );
    assert.equal(cloud.healthcare.operations().length, before, "nothing started");
    assert.equal(
      events.filter((e) => e.kind === "export.retry").length,
      2,
      "each retry first looked for an export it might have started",
    );
    cloud.faults = { ...cloud.faults, rate503: 0, pathFilter: "" };
    const name = await startExportOnce(hc, SIIM_TRAIN_STORE, "gs://owned-bucket/t", {
      since,
      known: new Set(),
      maybeStarted: true,
      clock: noWait,
    });
    assert.equal(cloud.healthcare.operations().length, before + 1);
    // A rerun that finds the `starting` record adopts that operation instead of exporting again.
    const again = await startExportOnce(hc, SIIM_TRAIN_STORE, "gs://owned-bucket/t", {
      since,
      known: new Set(),
      maybeStarted: true,
      clock: noWait,
    });
    assert.equal(again, name);
    assert.equal(cloud.healthcare.operations().length, before + 1);
  });

  test("an unknown store is a usage error (exit 2) naming the store", async () => {
    const hc = healthcareApi(client, cloud.baseUrl);
    const store = SIIM_TRAIN_STORE.replace("dicom-images-train", "no-such-store");
    const err = await hc.startExport(store, "gs://owned-bucket/x").catch((e: unknown) => e);
    assert.ok(err instanceof UsageError, String(err));
    assert.ok(err.message.includes(store));
  });
});
