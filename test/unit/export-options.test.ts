import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { validateConfig } from "../../src/config/schema.ts";
import { HttpError } from "../../src/core/errors.ts";
import {
  checkFilterPath,
  filterFileContent,
  filterLines,
  filterObjectName,
  isDicomUid,
  parseExportMimeType,
} from "../../src/gcp/export-options.ts";
import {
  exportBody,
  exportVersion,
  healthcareApi,
  type ExportOptions,
  type HealthcareApi,
} from "../../src/gcp/healthcare.ts";
import type { BucketAdmin } from "../../src/gcp/storage-admin.ts";
import type { HttpClient } from "../../src/net/http-client.ts";
import { planRun, runPipeline, type PipelineSpec } from "../../src/pipeline/pipeline.ts";
import { exportInput } from "../../src/pipeline/steps.ts";
import { MemoryStateStore, emptyState } from "../../src/workflow/state.ts";

const DATASET = "projects/p-roject/locations/us/datasets/d";
const STORE = `${DATASET}/dicomStores/s`;
const AGENT = "service-1@gcp-sa-healthcare.iam.gserviceaccount.com";

describe("mimeType", () => {
  test("the four kinds, spelled the API's way, with their extensions", () => {
    const got = (s: string) => {
      const r = parseExportMimeType(s);
      assert.ok(r.ok, s);
      return [r.value.kind, r.value.value, r.value.extension];
    };
    assert.deepEqual(got("application/dicom"), ["dicom", "application/dicom", ".dcm"]);
    assert.deepEqual(got("Application/DICOM;transfer-syntax=*"), [
      "dicom",
      "application/dicom; transfer-syntax=*",
      ".dcm",
    ]);
    assert.deepEqual(got("application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90")[2], ".dcm");
    assert.deepEqual(got("image/jpeg"), ["jpeg", "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50", ".jpg"]);
    assert.deepEqual(got("image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50")[2], ".jpg");
    assert.deepEqual(got("image/png"), ["png", "image/png", ".png"]);
    assert.deepEqual(got("application/octet-stream"), ["octet-stream", "application/octet-stream", ""]);
    assert.deepEqual(got("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1")[0], "octet-stream");
  });

  test("anything else is refused with the accepted forms", () => {
    for (const [bad, why] of [
      ["image/gif", /"image\/gif" is not an export mimeType/],
      ["image/png; transfer-syntax=1.2.840.10008.1.2.1", /image\/png takes no transfer-syntax/],
      [
        "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.91",
        /image\/jpeg takes transfer-syntax 1\.2\.840\.10008\.1\.2\.4\.50/,
      ],
      ["application/dicom; transfer-syntax=1.2.3", /"1\.2\.3" is not a transfer syntax/],
      ["application/dicom; charset=utf-8", /a parameter other than one transfer-syntax/],
      ["application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50", /takes transfer-syntax \* or/],
      ["", /is not an export mimeType/],
    ] as const) {
      const r = parseExportMimeType(bad);
      assert.equal(r.ok, false, bad);
      if (!r.ok) {
        assert.match(r.error, why);
        assert.match(
          r.error,
          /mimeType must be one of:\n {2}application\/dicom.*\n {2}image\/jpeg.*\n {2}image\/png\n/,
        );
      }
    }
  });
});

describe("filter", () => {
  test("UIDs: digits and dots, no leading zeros, at most 64; paths at study or series level", () => {
    assert.equal(isDicomUid("1.2.840.10008.1.2.1"), true);
    assert.equal(isDicomUid("0.1"), true);
    assert.equal(isDicomUid(`1.${"2".repeat(62)}`), true);
    for (const bad of ["", "1..2", "1.2.", ".1", "1.02", "1.2a", `1.${"2".repeat(63)}`])
      assert.equal(isDicomUid(bad), false, bad);
    assert.equal(checkFilterPath("/studies/1.2"), undefined);
    assert.equal(checkFilterPath("/studies/1.2/series/3.4"), undefined);
    assert.match(checkFilterPath("/studies/1.2/series/3.4/instances/5")!, /is not \/studies\/STUDY_UID/);
    assert.match(checkFilterPath("studies/1.2")!, /is not \/studies/);
    assert.match(checkFilterPath("/studies/1.2/")!, /is not \/studies/);
    assert.match(checkFilterPath("/studies/1.2/series/x")!, /"x" in \/studies\/1\.2\/series\/x is not a DICOM UID/);
  });

  test("the file is sorted, deduplicated, one a line; its object name is the lane and its SHA-256", () => {
    const a = filterFileContent(["/studies/2", "/studies/1/series/3", "/studies/2"]);
    assert.equal(a.toString(), "/studies/1/series/3\n/studies/2\n");
    assert.deepEqual(filterFileContent(["/studies/1/series/3", "/studies/2"]), a);
    const sha = createHash("sha256").update(a).digest("hex");
    assert.equal(filterObjectName("train", a), `.hcexport/filters/train-${sha}.txt`);
    assert.equal(filterObjectName("a/b", a), `.hcexport/filters/a_b-${sha}.txt`);
    assert.deepEqual(filterLines("\r\n/studies/1\r\n  \n/studies/2\n"), ["/studies/1", "/studies/2"]);
  });
});

describe("the export request", () => {
  test("body: gcsDestination.mimeType and filterConfig.resourcePathsGcsUri; a filter sends it to v1beta1", () => {
    assert.deepEqual(exportBody("gs://b/p"), { gcsDestination: { uriPrefix: "gs://b/p" } });
    assert.deepEqual(exportBody("gs://b/p", { mimeType: "image/png", filterUri: "gs://b/f.txt" }), {
      gcsDestination: { uriPrefix: "gs://b/p", mimeType: "image/png" },
      filterConfig: { resourcePathsGcsUri: "gs://b/f.txt" },
    });
    assert.equal(exportVersion({ mimeType: "image/png" }), "v1");
    assert.equal(exportVersion({}, "v1beta1"), "v1beta1");
    assert.equal(exportVersion({ filterUri: "gs://b/f" }, "v1"), "v1beta1");
  });

  test("healthcareApi posts a filtered export to /v1beta1/, others to /v1/", async () => {
    const posts: Array<{ url: string; body: unknown }> = [];
    const client = {
      async json(_m: string, url: string, o: { body?: unknown }) {
        posts.push({ url, body: o.body });
        return { name: `${DATASET}/operations/${posts.length}` };
      },
    } as unknown as HttpClient;
    const api = healthcareApi(client, "https://hc.example/");
    await api.startExport(STORE, "gs://b/p", { mimeType: "image/png" });
    await api.startExport(STORE, "gs://b/p", { filterUri: "gs://b/f.txt" });
    assert.deepEqual(
      posts.map((p) => p.url),
      [`https://hc.example/v1/${STORE}:export`, `https://hc.example/v1beta1/${STORE}:export`],
    );
    assert.deepEqual(posts[1]!.body, {
      gcsDestination: { uriPrefix: "gs://b/p" },
      filterConfig: { resourcePathsGcsUri: "gs://b/f.txt" },
    });
  });
});

describe("config", () => {
  const base = (e: Record<string, unknown>) => ({
    project: "my-project",
    bucket: { name: "my-bucket" },
    serviceAgent: AGENT,
    exports: [{ store: STORE, prefix: "train", dest: "out", ...e }],
  });
  test("mimeType is normalized; filter paths are checked; filter and filterFile exclude each other", () => {
    assert.equal(
      validateConfig(base({ mimeType: "image/jpeg" })).config?.exports[0]?.mimeType,
      "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50",
    );
    assert.deepEqual(validateConfig(base({ filter: ["/studies/1.2"] })).config?.exports[0]?.filter, ["/studies/1.2"]);
    const problems = (e: Record<string, unknown>) =>
      validateConfig(base(e)).problems.map((p) => `${p.path}: ${p.message}`);
    assert.match(
      problems({ mimeType: "text/plain" })[0]!,
      /^exports\[0\]\.mimeType: "text\/plain" is not an export mimeType/,
    );
    assert.match(problems({ filter: ["/studies/1.2", "/studies/x"] })[0]!, /^exports\[0\]\.filter\[1\]: "x" in/);
    assert.match(problems({ filter: [] })[0]!, /^exports\[0\]\.filter: list at least one study or series/);
    assert.match(
      problems({ filter: ["/studies/1"], filterFile: "f.txt" })[0]!,
      /^exports\[0\]\.filterFile: give filter or filterFile/,
    );
    assert.match(
      problems({ prefix: ".hcexport/x" })[0]!,
      /^exports\[0\]\.prefix: .*'\.hcexport\/' is reserved for hcexport's own state/,
    );
  });
});

/** Fakes for a filtered lane: an object store that counts uploads, a Healthcare API that records starts. */
function fakes(o: { postFailsAfterSending?: boolean; crashAfterUpload?: boolean } = {}) {
  const objects = new Map<string, Buffer>();
  const uploads: string[] = [];
  const starts: Array<{ uri: string; options?: ExportOptions }> = [];
  const ops: Array<{ name: string; metadata: Record<string, string> }> = [];
  let crash = o.crashAfterUpload === true;
  let postFails = o.postFailsAfterSending === true;
  const buckets: BucketAdmin = {
    async ensureBucket() {
      return { created: false };
    },
    async getPolicy() {
      return { version: 1, bindings: [{ role: "roles/storage.objectAdmin", members: [`serviceAccount:${AGENT}`] }] };
    },
    async setPolicy(_b, p) {
      return p;
    },
    async ensureObject(bucket, name, data) {
      const key = `gs://${bucket}/${name}`;
      uploads.push(key);
      const created = !objects.get(key)?.equals(data);
      objects.set(key, data);
      if (crash) {
        crash = false;
        throw new Error("killed between the upload and the export start");
      }
      return { created };
    },
  };
  const healthcare: HealthcareApi = {
    async startExport(_store, uri, options) {
      starts.push({ uri, ...(options === undefined ? {} : { options }) });
      const name = `${DATASET}/operations/${starts.length}`;
      ops.push({
        name,
        metadata: {
          apiMethodName: "google.cloud.healthcare.v1beta1.dicom.DicomService.ExportDicomData",
          createTime: new Date().toISOString(),
        },
      });
      if (postFails) {
        postFails = false;
        throw new HttpError({ status: 503, method: "POST", url: "x", message: "response lost" });
      }
      return name;
    },
    async getOperation(name) {
      return { name, done: true, metadata: { counter: { success: "2" } }, response: {} };
    },
    async listOperations() {
      return ops;
    },
    async cancelOperation() {},
  };
  const source = { async *listPages() {}, open: async () => Promise.reject(new Error("none")) };
  return { ports: { buckets, healthcare, source }, objects, uploads, starts };
}

const spec: PipelineSpec = {
  bucket: { name: "bkt", project: "my-project" },
  serviceAgent: AGENT,
  grantIam: false,
  exports: [
    {
      store: STORE,
      prefix: "train",
      dest: "/tmp/hcx-never-written",
      mimeType: "image/png",
      filter: ["/studies/2", "/studies/1"],
    },
  ],
  concurrency: 1,
  follow: false,
};
const fast = {
  clock: { now: () => Date.now(), sleep: async () => {} },
  backoff: { initialMs: 1, maxMs: 1, multiplier: 1, jitter: "none" as const },
};

describe("the export step of a filtered lane", () => {
  test("uploads the filter, then starts one v1beta1 export with it and the mimeType; plan and status name both", async () => {
    const f = fakes();
    const state = new MemoryStateStore();
    await runPipeline(spec, f.ports, { state, poll: fast });
    const uri = `gs://bkt/${filterObjectName("train", filterFileContent(["/studies/1", "/studies/2"]))}`;
    assert.deepEqual(f.uploads, [uri]);
    assert.equal(f.objects.get(uri)!.toString(), "/studies/1\n/studies/2\n");
    assert.deepEqual(f.starts, [{ uri: "gs://bkt/train", options: { mimeType: "image/png", filterUri: uri } }]);
    const row = planRun(spec, state.state).find((p) => p.key === "export:train")!;
    assert.match(row.describe, /→ gs:\/\/bkt\/train as image\/png \(filter: 2 paths, sha256 [0-9a-f]{12}\)$/);
    assert.equal(row.action, "skip");
    assert.match(row.summary!, new RegExp(`as image/png \\(filter: 2 paths in ${uri.replace(/[./]/g, "\\$&")}\\)$`));
    // Another filter is another input: the next run exports again.
    const other = { ...spec, exports: [{ ...spec.exports[0]!, filter: ["/studies/1"] }] };
    assert.equal(planRun(other, state.state).find((p) => p.key === "export:train")!.action, "run");
    assert.notEqual(exportInput(other.exports[0]!, "gs://bkt/train"), exportInput(spec.exports[0]!, "gs://bkt/train"));
    assert.equal(planRun(spec, emptyState()).find((p) => p.key === "export:train")!.action, "run");
  });

  test("killed after the upload: the rerun uploads nothing new and starts exactly one export", async () => {
    const f = fakes({ crashAfterUpload: true });
    const state = new MemoryStateStore();
    await assert.rejects(runPipeline(spec, f.ports, { state, poll: fast }), /killed between the upload/);
    assert.equal(f.starts.length, 0);
    await runPipeline(spec, f.ports, { state, poll: fast });
    assert.equal(f.uploads.length, 2, "uploaded again, idempotently");
    assert.equal(f.objects.size, 1);
    assert.equal(f.starts.length, 1);
  });

  test("the start's response is lost: the export is adopted, not started twice", async () => {
    const f = fakes({ postFailsAfterSending: true });
    await runPipeline(spec, f.ports, { state: new MemoryStateStore(), poll: fast });
    assert.equal(f.starts.length, 1);
    assert.equal(f.objects.size, 1);
  });
});
