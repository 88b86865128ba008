import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  BUCKET_PERMISSIONS,
  DICOM_STORE_PERMISSIONS,
  doctorVerdict,
  runDoctor,
  safeMessage,
  type CheckResult,
  type DoctorEvent,
  type DoctorPorts,
  type DoctorSpec,
} from "../../src/workflow/doctor.ts";
import { EXPORT_ROLE, type Policy } from "../../src/workflow/iam-policy.ts";
import { HttpError, PermissionError } from "../../src/core/errors.ts";

const AGENT = "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";
const TRAIN =
  "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-train";
const TEST =
  "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/dicomStores/dicom-images-test";
const FHIR =
  "projects/kaggle-siim-healthcare/locations/us-central1/datasets/siim-pneumothorax/fhirStores/fhir-masks-train";

const spec = (patch: Partial<DoctorSpec> = {}): DoctorSpec => ({
  endpoints: {
    storage: "https://storage.googleapis.com",
    healthcare: "https://healthcare.googleapis.com",
    resourceManager: "https://cloudresourcemanager.googleapis.com",
    anonymous: false,
  },
  project: "my-project",
  bucket: "my-bucket",
  grantIam: false,
  serviceAgentConfigured: true,
  dicomStores: [TRAIN, TEST],
  fhirStore: FHIR,
  ...patch,
});

const bound: Policy = {
  etag: "CAE=",
  version: 1,
  bindings: [
    { role: "roles/storage.legacyBucketOwner", members: ["projectOwner:my-project"] },
    { role: EXPORT_ROLE, members: [`serviceAccount:${AGENT}`] },
  ],
};
const unbound: Policy = {
  etag: "CAE=",
  version: 1,
  bindings: [{ role: "roles/storage.objectCreator", members: [`serviceAccount:${AGENT}`] }],
};

const http = (status: number) =>
  new HttpError({ status, method: "GET", url: "https://example.invalid/x", message: `status ${status}` });
const refused = () => Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" });

/** Everything granted and bound; `calls` records which ports ran. */
function fakePorts(patch: Partial<DoctorPorts> = {}): DoctorPorts & { calls: string[] } {
  const calls: string[] = [];
  const base: DoctorPorts = {
    credentials: async () => ({ kind: "user credentials (gcloud auth application-default login)" }),
    probe: async () => ({ status: 404 }),
    getBucket: async () => ({ location: "US-CENTRAL1" }),
    testBucketPermissions: async (_b, p) => [...p],
    testStorePermissions: async (_s, p) => [...p],
    getBucketPolicy: async () => structuredClone(bound),
    serviceAgent: async () => AGENT,
  };
  const merged = { ...base, ...patch };
  const ports = Object.fromEntries(
    Object.entries(merged).map(([name, fn]) => [
      name,
      (...args: unknown[]) => {
        calls.push(args.length > 1 && typeof args[0] === "string" ? `${name} ${args[0]}` : name);
        return (fn as (...a: unknown[]) => unknown)(...args);
      },
    ]),
  ) as unknown as DoctorPorts;
  return Object.assign(ports, { calls });
}

const byId = (results: CheckResult[], id: string): CheckResult => {
  const r = results.find((x) => x.id === id);
  assert.ok(r, `no check ${id} in ${results.map((x) => x.id).join(", ")}`);
  return r;
};

describe("doctor checks", () => {
  test("all well: every check ok, exit 0, one event per check, summary says so", async () => {
    const events: DoctorEvent[] = [];
    const results = await runDoctor(spec(), fakePorts(), { onEvent: (e) => events.push(e) });
    assert.deepEqual(
      results.map((r) => r.id),
      [
        "credentials",
        "endpoint.storage",
        "endpoint.healthcare",
        "endpoint.resourceManager",
        "bucket",
        "bucket.permissions",
        `store:${TRAIN}`,
        `store:${TEST}`,
        `store:${FHIR}`,
        "service-agent",
      ],
    );
    assert.deepEqual(
      results.filter((r) => r.status !== "ok").map((r) => `${r.id}: ${r.detail}`),
      [],
    );
    assert.match(
      byId(results, "credentials").detail,
      /^user credentials \(gcloud auth application-default login\); an access token was obtained$/,
    );
    assert.match(
      byId(results, "endpoint.storage").detail,
      /reachable \(HTTP 404\)/,
      "a 404 still proves the endpoint answers",
    );
    assert.match(
      byId(results, "service-agent").detail,
      new RegExp(`${AGENT} holds roles/storage\\.objectAdmin on gs://my-bucket`),
    );
    assert.equal(events.length, results.length);
    assert.ok(events.every((e) => e.kind === "doctor.check"));
    const v = doctorVerdict(results);
    assert.equal(v.ok, true);
    assert.equal(v.exitCode, 0);
    assert.equal(v.summary, "all is well: 10 checks ok");
  });

  test("anonymous local cloud: credentials ok without asking the port", async () => {
    const ports = fakePorts({
      credentials: async () => assert.fail("must not look up credentials against the local cloud"),
    });
    const results = await runDoctor(spec({ endpoints: { ...spec().endpoints, anonymous: true } }), ports);
    assert.equal(byId(results, "credentials").status, "ok");
    assert.match(byId(results, "credentials").detail, /^anonymous \(local cloud\)/);
    assert.ok(!ports.calls.includes("credentials"));
  });

  test("missing binding: fail naming member and role, with the grant command; exit 3", async () => {
    const results = await runDoctor(spec(), fakePorts({ getBucketPolicy: async () => structuredClone(unbound) }));
    const sa = byId(results, "service-agent");
    assert.equal(sa.status, "fail");
    assert.equal(sa.reason, "permission");
    assert.match(
      sa.detail,
      /gs:\/\/my-bucket: service-38125765871@gcp-sa-healthcare\.iam\.gserviceaccount\.com lacks roles\/storage\.objectAdmin/,
    );
    assert.match(sa.detail, /objectCreator is not enough/);
    assert.equal(sa.hint, `run 'hcexport iam grant gs://my-bucket --service-agent ${AGENT}' or pass --grant-iam`);
    const v = doctorVerdict(results);
    assert.equal(v.exitCode, 3);
    assert.match(v.summary, /^1 check failed: service agent binding on gs:\/\/my-bucket$/);
    // With grantIam the run would grant it: only a warning.
    const granting = await runDoctor(
      spec({ grantIam: true }),
      fakePorts({ getBucketPolicy: async () => structuredClone(unbound) }),
    );
    assert.equal(byId(granting, "service-agent").status, "warn");
    assert.equal(doctorVerdict(granting).exitCode, 0);
  });

  test("a conditional binding does not count", async () => {
    const conditional: Policy = {
      version: 3,
      bindings: [
        { role: EXPORT_ROLE, members: [`serviceAccount:${AGENT}`], condition: { title: "t", expression: "true" } },
      ],
    };
    const results = await runDoctor(spec(), fakePorts({ getBucketPolicy: async () => conditional }));
    assert.equal(byId(results, "service-agent").status, "fail");
  });

  test("unreachable storage endpoint: storage checks skipped with the reason, every other check still runs; exit 1", async () => {
    const ports = fakePorts({
      probe: async (url) => (url.startsWith("https://storage.") ? Promise.reject(refused()) : { status: 404 }),
    });
    const results = await runDoctor(spec(), ports);
    const ep = byId(results, "endpoint.storage");
    assert.equal(ep.status, "fail");
    assert.equal(ep.reason, "unreachable");
    assert.match(ep.detail, /cannot reach https:\/\/storage\.googleapis\.com: connect ECONNREFUSED/);
    for (const id of ["bucket", "bucket.permissions", "service-agent"]) {
      assert.equal(byId(results, id).status, "skip", id);
      assert.equal(byId(results, id).detail, "skipped: Cloud Storage endpoint failed");
    }
    for (const id of [
      "credentials",
      "endpoint.healthcare",
      "endpoint.resourceManager",
      `store:${TRAIN}`,
      `store:${TEST}`,
      `store:${FHIR}`,
    ])
      assert.equal(byId(results, id).status, "ok", id);
    assert.ok(
      ports.calls.includes(`testStorePermissions ${TRAIN}`) && ports.calls.includes(`testStorePermissions ${FHIR}`),
    );
    assert.ok(
      !ports.calls.some((c) => c.startsWith("getBucket") || c.startsWith("testBucketPermissions")),
      "no call to an endpoint known to be down",
    );
    assert.equal(doctorVerdict(results).exitCode, 1);
  });

  test("one check throwing does not stop the others", async () => {
    const results = await runDoctor(
      spec(),
      fakePorts({
        testStorePermissions: async (s, p) => (s === TEST ? Promise.reject(new Error("socket hang up")) : [...p]),
      }),
    );
    assert.equal(byId(results, `store:${TEST}`).status, "fail");
    assert.equal(byId(results, `store:${TEST}`).reason, "error");
    assert.equal(byId(results, `store:${TEST}`).detail, "socket hang up");
    assert.equal(byId(results, `store:${TRAIN}`).status, "ok");
    assert.equal(byId(results, "service-agent").status, "ok");
  });

  test("a check past its deadline fails as unreachable, its signal is aborted, the rest finish", async () => {
    let seen: AbortSignal | undefined;
    const results = await runDoctor(
      spec(),
      fakePorts({ getBucket: (_b, signal) => ((seen = signal), new Promise(() => {})) }),
      { timeoutMs: 30 },
    );
    const bucket = byId(results, "bucket");
    assert.equal(bucket.status, "fail");
    assert.equal(bucket.reason, "unreachable");
    assert.equal(bucket.detail, "timed out after 30 ms");
    assert.equal(seen?.aborted, true);
    assert.equal(byId(results, "bucket.permissions").status, "ok");
    assert.equal(byId(results, "service-agent").status, "ok");
  });

  test("no usable credentials: fail with the fix, remote checks skipped, endpoints still probed; token-like text masked", async () => {
    const ports = fakePorts({
      credentials: async () =>
        Promise.reject(new Error("refresh failed for Bearer ya29.a0AfH6SMsecret: invalid_grant")),
    });
    const results = await runDoctor(spec(), ports);
    const c = byId(results, "credentials");
    assert.equal(c.status, "fail");
    assert.equal(c.reason, "permission");
    assert.ok(!c.detail.includes("a0AfH6SMsecret"), c.detail);
    assert.match(c.hint ?? "", /gcloud auth application-default login/);
    assert.equal(byId(results, "endpoint.storage").status, "ok");
    assert.equal(byId(results, `store:${TRAIN}`).detail, "skipped: credentials failed");
    assert.equal(doctorVerdict(results).exitCode, 3);
  });

  test("store permissions: none granted (missing store or no access) fails; only optional ones missing warns", async () => {
    const results = await runDoctor(
      spec(),
      fakePorts({
        testStorePermissions: async (s, p) =>
          s === TRAIN ? [] : s === TEST ? p.filter((x) => x !== "healthcare.dicomStores.dicomWebRead") : [...p],
      }),
    );
    const train = byId(results, `store:${TRAIN}`);
    assert.equal(train.status, "fail");
    assert.match(
      train.detail,
      /none of healthcare\.dicomStores\.export, .* granted on .*dicom-images-train: the store does not exist, or your account has no access to it/,
    );
    const testStore = byId(results, `store:${TEST}`);
    assert.equal(testStore.status, "warn");
    assert.match(testStore.detail, /healthcare\.dicomStores\.dicomWebRead \(needed only for 'hcexport dicomweb pull'/);
    const exportMissing = await runDoctor(
      spec({ dicomStores: [TRAIN], fhirStore: undefined }),
      fakePorts({ testStorePermissions: async () => ["healthcare.dicomStores.get"] }),
    );
    assert.equal(byId(exportMissing, `store:${TRAIN}`).status, "fail");
    assert.match(byId(exportMissing, `store:${TRAIN}`).detail, /^missing healthcare\.dicomStores\.export on /);
    assert.ok(DICOM_STORE_PERMISSIONS.includes("healthcare.dicomStores.export"));
  });

  test("bucket permissions: setIamPolicy missing only warns; objects.list missing fails; a missing bucket warns and skips", async () => {
    const noSet = await runDoctor(
      spec(),
      fakePorts({ testBucketPermissions: async (_b, p) => p.filter((x) => x !== "storage.buckets.setIamPolicy") }),
    );
    assert.equal(byId(noSet, "bucket.permissions").status, "warn");
    assert.match(byId(noSet, "bucket.permissions").detail, /needed only to grant the service agent/);
    const noList = await runDoctor(
      spec(),
      fakePorts({ testBucketPermissions: async (_b, p) => p.filter((x) => x !== "storage.objects.list") }),
    );
    assert.equal(byId(noList, "bucket.permissions").status, "fail");
    assert.match(byId(noList, "bucket.permissions").detail, /^missing storage\.objects\.list; granted: /);
    assert.equal(BUCKET_PERMISSIONS.length, 5);
    const missing = await runDoctor(
      spec(),
      fakePorts({
        getBucket: async () => undefined,
        testBucketPermissions: async () => Promise.reject(http(404)),
        getBucketPolicy: async () => Promise.reject(http(404)),
      }),
    );
    assert.equal(byId(missing, "bucket").status, "warn");
    assert.match(byId(missing, "bucket").hint ?? "", /hcexport bucket ensure gs:\/\/my-bucket --project my-project/);
    assert.equal(byId(missing, "bucket.permissions").status, "skip");
    assert.equal(
      byId(missing, "service-agent").status,
      "fail",
      "without grantIam the created bucket would still lack the binding",
    );
    assert.match(byId(missing, "service-agent").detail, /will lack roles\/storage\.objectAdmin/);
  });

  test("Resource Manager matters only when the service agent must be looked up", async () => {
    const probe = async (url: string) =>
      url.startsWith("https://cloudresourcemanager.") ? Promise.reject(refused()) : { status: 404 };
    const named = await runDoctor(spec(), fakePorts({ probe }));
    assert.equal(byId(named, "endpoint.resourceManager").status, "warn");
    assert.equal(byId(named, "service-agent").status, "ok");
    assert.equal(doctorVerdict(named).exitCode, 0);
    const derived = await runDoctor(spec({ serviceAgentConfigured: false }), fakePorts({ probe }));
    assert.equal(byId(derived, "endpoint.resourceManager").status, "fail");
    assert.equal(byId(derived, "service-agent").detail, "skipped: Resource Manager endpoint failed");
  });

  test("a project-number lookup refused: the lookup's own fix is passed on", async () => {
    const results = await runDoctor(
      spec({ serviceAgentConfigured: false }),
      fakePorts({
        serviceAgent: async () =>
          Promise.reject(
            new PermissionError("cannot look up the project number of p (HTTP 403)", {
              hint: 'put "serviceAgent": … in the config',
            }),
          ),
      }),
    );
    const sa = byId(results, "service-agent");
    assert.equal(sa.status, "fail");
    assert.equal(sa.reason, "permission");
    assert.equal(sa.hint, 'put "serviceAgent": … in the config');
  });

  test("verdict precedence: unreachable/unexpected (1) > config (2) > permission (3)", () => {
    const r = (reason: CheckResult["reason"]): CheckResult => ({
      id: String(reason),
      name: String(reason),
      status: "fail",
      detail: "",
      durationMs: 0,
      ...(reason === undefined ? {} : { reason }),
    });
    assert.equal(doctorVerdict([r("permission"), r("config")]).exitCode, 2);
    assert.equal(doctorVerdict([r("permission"), r("unreachable")]).exitCode, 1);
    assert.equal(doctorVerdict([r("permission")]).exitCode, 3);
    assert.equal(doctorVerdict([r(undefined)]).exitCode, 1);
  });

  test("safeMessage masks bearer tokens and credential fields", () => {
    assert.equal(
      safeMessage(
        new Error('Authorization: Bearer abc.def failed; {"access_token":"ya29.zzz","refresh_token": "1//r"}'),
      ),
      'Authorization: Bearer REDACTED failed; {"access_token":"REDACTED","refresh_token": "REDACTED"}',
    );
  });
});
