import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "undici";
import { startLocalCloud, type LocalCloud } from "../../src/emulator/local-cloud.ts";
import { SIIM, SIIM_TRAIN_STORE } from "../../src/emulator/dataset/siim.ts";

// The v1beta1 export filter (DicomFilterConfig.resourcePathsGcsUri) as the local cloud implements it.
let cloud: LocalCloud;
const AGENT = `serviceAccount:${SIIM.serviceAgent}`;
const BUCKET = "filter-bucket";

/** An operation, or an error answer (both read through the fields a test looks at). */
interface Answer {
  readonly name: string;
  readonly done?: boolean;
  readonly error?: { readonly code: number; readonly message: string };
  readonly metadata: { readonly counter: Record<string, string> };
}

async function call(method: string, p: string, body?: unknown) {
  const res = await request(cloud.baseUrl + p, {
    method: method as "GET",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, json: () => JSON.parse(text) as Answer };
}

async function exportFiltered(prefix: string, filterUri: string, version = "v1beta1") {
  const r = await call("POST", `/${version}/${SIIM_TRAIN_STORE}:export`, {
    gcsDestination: { uriPrefix: `gs://${BUCKET}/${prefix}` },
    filterConfig: { resourcePathsGcsUri: filterUri },
  });
  return r;
}

async function waitDone(name: string): Promise<Answer> {
  for (let i = 0; i < 500; i++) {
    const op = (await call("GET", `/v1/${name}`)).json();
    if (op["done"] === true) return op;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`operation ${name} did not finish`);
}

const names = (prefix: string) =>
  cloud.store
    .listObjects(BUCKET, { prefix: `${prefix}/`, limit: 1000 })
    .map((o) => o.name.slice(prefix.length + 1))
    .sort();

before(async () => {
  cloud = await startLocalCloud({
    dataset: { train: 12, test: 2, instanceBytes: 2048 },
    exportInstancesPerSecond: 5000,
  });
  cloud.store.createBucket({ name: BUCKET, projectNumber: SIIM.projectNumber });
  cloud.store.setPolicy(BUCKET, { version: 1, bindings: [{ role: "roles/storage.objectAdmin", members: [AGENT] }] });
});
after(() => cloud.close());

describe("export filterConfig (v1beta1)", () => {
  test("exports exactly the listed studies, series and instances (\\r\\n lines), counters over those only", async () => {
    const all = cloud.healthcare.instances(SIIM_TRAIN_STORE);
    const [a, b, c] = [all[0]!, all[3]!, all[7]!];
    const text = `/studies/${a.studyUid}\r\n/studies/${b.studyUid}/series/${b.seriesUid}\n/studies/${c.studyUid}/series/${c.seriesUid}/instances/${c.sopInstanceUid}\n`;
    cloud.store.putObject(BUCKET, "filters/three.txt", Buffer.from(text), "text/plain");
    const r = await exportFiltered("f1", `gs://${BUCKET}/filters/three.txt`);
    assert.equal(r.status, 200);
    const op = await waitDone(r.json()["name"]);
    assert.equal(op["error"], undefined, JSON.stringify(op["error"]));
    const want = all
      .filter(
        (i) =>
          i.studyUid === a.studyUid ||
          (i.studyUid === b.studyUid && i.seriesUid === b.seriesUid) ||
          i.sopInstanceUid === c.sopInstanceUid,
      )
      .map((i) => `${i.studyUid}/${i.seriesUid}/${i.sopInstanceUid}.dcm`)
      .sort();
    assert.ok(want.length >= 3 && want.length < all.length);
    assert.deepEqual(names("f1"), want);
    assert.deepEqual(op["metadata"]["counter"], { success: String(want.length) });
    assert.equal(cloud.healthcare.operation(op["name"])!.filter, `gs://${BUCKET}/filters/three.txt`);
  });

  test("a missing filter file fails the operation with NOT_FOUND and writes nothing", async () => {
    const r = await exportFiltered("f2", `gs://${BUCKET}/filters/absent.txt`);
    assert.equal(r.status, 200);
    const op = await waitDone(r.json()["name"]);
    assert.equal(op["error"]?.["code"], 5);
    assert.match(String(op["error"]?.["message"]), /filter file gs:\/\/filter-bucket\/filters\/absent\.txt not found/);
    assert.deepEqual(names("f2"), []);
  });

  test("a filter the service agent cannot read (7) or with a malformed line (3) fails the operation", async () => {
    cloud.store.createBucket({ name: "other-bucket", projectNumber: SIIM.projectNumber });
    cloud.store.putObject("other-bucket", "f.txt", Buffer.from("/studies/1.2.3\n"), "text/plain");
    const denied = await waitDone((await exportFiltered("f3", "gs://other-bucket/f.txt")).json()["name"]);
    assert.equal(denied["error"]?.["code"], 7);
    assert.match(String(denied["error"]?.["message"]), /storage\.objects\.get/);
    cloud.store.setPolicy("other-bucket", {
      version: 1,
      bindings: [{ role: "roles/storage.objectViewer", members: [AGENT] }],
    });
    const viewer = await waitDone((await exportFiltered("f3", "gs://other-bucket/f.txt")).json()["name"]);
    assert.equal(viewer["error"], undefined, "objectViewer on the filter's bucket is enough to read it");
    assert.deepEqual(names("f3"), [], "a study the store does not hold exports nothing");
    cloud.store.putObject(BUCKET, "filters/bad.txt", Buffer.from("/studies/1.2.3\n/series/4.5\n"), "text/plain");
    const bad = await waitDone((await exportFiltered("f4", `gs://${BUCKET}/filters/bad.txt`)).json()["name"]);
    assert.equal(bad["error"]?.["code"], 3);
    assert.match(String(bad["error"]?.["message"]), /invalid resource path .*: \/series\/4\.5/);
  });

  test("v1 has no filterConfig (400 Unknown name); a resourcePathsGcsUri that is not gs://B/OBJECT is 400", async () => {
    const v1 = await exportFiltered("f5", `gs://${BUCKET}/filters/three.txt`, "v1");
    assert.equal(v1.status, 400);
    assert.match(String(v1.json()["error"]?.["message"]), /Unknown name "filterConfig"/);
    for (const uri of [`gs://${BUCKET}`, "https://x/y", 7]) {
      const r = await call("POST", `/v1beta1/${SIIM_TRAIN_STORE}:export`, {
        gcsDestination: { uriPrefix: `gs://${BUCKET}/f5` },
        filterConfig: { resourcePathsGcsUri: uri },
      });
      assert.equal(r.status, 400, String(uri));
    }
    assert.deepEqual(names("f5"), []);
  });
});
