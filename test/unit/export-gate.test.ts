import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { HealthcareApi, Operation } from "../../src/gcp/healthcare.ts";
import { exportStep } from "../../src/pipeline/steps.ts";
import { runWorkflow } from "../../src/workflow/engine.ts";
import { Workflow, type StepContext } from "../../src/workflow/graph.ts";
import { MemoryStateStore, type RunState, type StepRecord } from "../../src/workflow/state.ts";

// The export gate (steps.ts exportStep) with the journal's notes: at most one lane can have an
// export on the server the journal does not name, so a resumed lane adopts only if it was the one
// posting. A DICOM export to Cloud Storage and one to BigQuery of the same store look alike on the
// server (same method, no destination): without the notes, the lane that resumes first adopts
// whatever unrecorded export it finds.

const DATASET = "projects/p/locations/l/datasets/d";
const TRAIN = `${DATASET}/dicomStores/train`;
const FHIR = `${DATASET}/fhirStores/f`;
const DICOM_EXPORT = "google.cloud.healthcare.v1.dicom.DicomService.ExportDicomData";
const FHIR_EXPORT = "google.cloud.healthcare.v1.fhir.FhirStoreService.ExportResources";
const T0 = "2026-12-02T06:00:00.000Z";

/** A server holding `existing` operations; records POSTs and what the journal said at each POST. */
function server(existing: Operation[], journal: () => RunState) {
  const ops = [...existing];
  const posts: Array<{ store: string; destination: string; notes: unknown }> = [];
  const lists: string[] = [];
  const api: HealthcareApi = {
    async startExport(store, destination) {
      const key = Object.keys(journal().steps).find((k) => journal().steps[k]!.input === `${store} → ${destination}`)!;
      posts.push({ store, destination, notes: structuredClone(journal().steps[key]?.notes) });
      const name = `${DATASET}/operations/new-${ops.length}`;
      const method = store.includes("/fhirStores/") ? FHIR_EXPORT : DICOM_EXPORT;
      ops.push({ name, metadata: { apiMethodName: method, createTime: new Date().toISOString() } });
      return name;
    },
    async getOperation(name) {
      return { name, done: true };
    },
    async listOperations(dataset) {
      lists.push(dataset);
      return ops;
    },
    async cancelOperation() {},
  };
  return { api, posts, lists };
}

const op = (id: string, method = DICOM_EXPORT, createTime = "2026-12-02T06:00:05.000Z"): Operation => ({
  name: `${DATASET}/operations/${id}`,
  metadata: { apiMethodName: method, createTime },
});

/** Two export lanes of one store (→ gs:// and → bq://) and a FHIR lane, journaled as given. */
async function run(steps: Record<string, StepRecord>, existing: Operation[]) {
  const store = new MemoryStateStore({ version: 2, steps: structuredClone(steps) });
  const s = server(existing, () => store.state);
  const wf = new Workflow();
  const lanes: Array<[string, string, string]> = [
    ["export:train", TRAIN, "gs://b/train"],
    ["export:train.bq", TRAIN, "bq://p.d.t"],
    ["export:fhir", FHIR, "gs://b/fhir"],
  ];
  for (const [key, src, dest] of lanes)
    wf.step(key, { idempotency: "at-most-once", describe: key, input: `${src} → ${dest}` }, (ctx: StepContext) =>
      exportStep(ctx, s.api, src, dest, () => {}),
    );
  const r = await runWorkflow(wf, { journal: store });
  assert.equal(r.error, undefined);
  const opOf = (k: string) => (store.state.steps[k]?.result as { operation: string }).operation.split("/").pop();
  return { ...s, state: store.state, ops: Object.fromEntries(lanes.map(([k]) => [k, opOf(k)])) };
}

const started = (input: string, notes?: Record<string, unknown>): StepRecord => ({
  status: "started",
  input,
  startedAt: T0,
  attempts: 1,
  ...(notes === undefined ? {} : { notes }),
});

describe("export gate: journaled posting, no cross-lane adoption", () => {
  test("a fresh run notes `posting` before each POST and the operation after it; one POST per lane", async () => {
    const r = await run({}, []);
    assert.equal(r.posts.length, 3);
    for (const p of r.posts) {
      const notes = p.notes as { posting?: string; operation?: string };
      assert.match(notes.posting ?? "", /^\d{4}-\d\d-\d\dT/, "posting noted before the POST");
      assert.equal(notes.operation, undefined);
    }
    assert.deepEqual(r.lists, [], "nothing was posting before: no lane looked for an export to adopt");
    assert.deepEqual(r.ops, { "export:train": "new-0", "export:train.bq": "new-1", "export:fhir": "new-2" });
    assert.ok(Object.values(r.state.steps).every((s) => s.status === "done" && s.notes === undefined));
  });

  test("killed while the BigQuery lane was posting: the Cloud Storage lane (journaled started, never posting) does not adopt its export", async () => {
    const r = await run(
      {
        "export:train": started(`${TRAIN} → gs://b/train`, {}),
        "export:train.bq": started(`${TRAIN} → bq://p.d.t`, { posting: "2026-12-02T06:00:04.000Z" }),
        "export:fhir": started(`${FHIR} → gs://b/fhir`, {}),
      },
      [op("bq-export")],
    );
    assert.deepEqual(r.ops, { "export:train": "new-1", "export:train.bq": "bq-export", "export:fhir": "new-2" });
    assert.deepEqual(
      r.posts.map((p) => p.destination),
      ["gs://b/train", "gs://b/fhir"],
    );
    assert.equal(r.lists.length, 1, "only the lane that was posting looked");
  });

  test("a lane that noted its operation reuses it without a look or a POST; a legacy record (no notes) adopts as before", async () => {
    const r = await run(
      {
        "export:train": started(`${TRAIN} → gs://b/train`, { posting: T0, operation: `${DATASET}/operations/gcs` }),
        "export:train.bq": started(`${TRAIN} → bq://p.d.t`),
        "export:fhir": started(`${FHIR} → gs://b/fhir`, {}),
      },
      [op("gcs"), op("bq-legacy", DICOM_EXPORT, "2026-12-02T06:00:06.000Z")],
    );
    assert.deepEqual(r.ops, { "export:train": "gcs", "export:train.bq": "bq-legacy", "export:fhir": "new-2" });
    assert.deepEqual(
      r.posts.map((p) => p.destination),
      ["gs://b/fhir"],
    );
  });

  test("a FHIR lane that was posting adopts only an ExportResources operation, never a DICOM export", async () => {
    const r = await run(
      {
        "export:train": started(`${TRAIN} → gs://b/train`, { posting: T0, operation: `${DATASET}/operations/gcs` }),
        "export:train.bq": started(`${TRAIN} → bq://p.d.t`, { posting: T0, operation: `${DATASET}/operations/bq` }),
        "export:fhir": started(`${FHIR} → gs://b/fhir`, { posting: T0 }),
      },
      [op("gcs"), op("bq"), op("someone-elses-dicom-export", DICOM_EXPORT, "2026-12-02T06:00:09.000Z")],
    );
    assert.equal(r.ops["export:fhir"], "new-3", "the DICOM export is not adopted by the FHIR lane");
    const again = await run({ "export:fhir": started(`${FHIR} → gs://b/fhir`, { posting: T0 }) }, [
      op("fhir-mine", FHIR_EXPORT),
      op("dicom", DICOM_EXPORT, "2026-12-02T06:00:09.000Z"),
    ]);
    assert.equal(again.ops["export:fhir"], "fhir-mine");
  });
});
