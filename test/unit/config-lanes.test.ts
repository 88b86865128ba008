import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { specOf } from "../../src/cli/commands/run.ts";
import { validateConfig, type Config } from "../../src/config/schema.ts";
import { planRun } from "../../src/pipeline/pipeline.ts";
import { siimWorkflow } from "../../src/pipeline/siim-workflow.ts";
import { emptyState, type RunState, type StepRecord } from "../../src/workflow/state.ts";

// The optional lanes of `run` from the config (issue #12 parts 5 and 6): `exports[i].bigquery` and
// `fhirExports`, validated with the rest, and the graph `plan` and `status` derive from them.

const read = async (f: string) =>
  JSON.parse(await readFile(new URL(`../../config/${f}`, import.meta.url), "utf8")) as Record<string, unknown> & {
    exports: Array<Record<string, unknown>>;
    annotations: { store: string };
  };
const AGENT = "service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com";
const specFor = (config: Config) => specOf({ file: "/c.json", config, stateDir: "/s" }, AGENT);

describe("config: fhirExports and exports[i].bigquery", () => {
  test("the shipped examples are valid; fhirExports[i].store defaults to the annotations' FHIR store", async () => {
    for (const f of ["siim.json", "demo-lanes.json"]) {
      const c = await read(f);
      const v = validateConfig(c);
      assert.deepEqual(v.problems, [], f);
      const lanes = specFor(v.config!).lanes ?? [];
      assert.deepEqual(
        lanes.map((l) => l.name),
        ["train.bq", "fhir"],
        f,
      );
      const plan = planRun(specFor(v.config!), emptyState());
      assert.equal(
        plan.find((p) => p.key === "export:fhir")?.describe,
        `${c.annotations.store} → gs://${(c["bucket"] as { name: string }).name}/fhir`,
      );
    }
  });

  test("every problem with its JSON path: a prefix another lane uses, no store to default to, a DICOM store", async () => {
    const c = await read("siim.json");
    const bad = {
      ...c,
      fhirExports: [
        { prefix: "train", dest: "a" },
        { prefix: "train.bq", dest: "b" },
        { prefix: "fhir", dest: "c", store: c.exports[0]!["store"] },
        { prefix: "fhir", dest: "d", extra: 1 },
      ],
    };
    assert.deepEqual(
      validateConfig(bad).problems.map((p) => p.path),
      [
        "fhirExports[2].store",
        "fhirExports[3]",
        "fhirExports[0].prefix",
        "fhirExports[1].prefix",
        "fhirExports[3].prefix",
      ],
    );
    const { annotations: _a, ...noAnnotations } = c;
    const orphan = validateConfig({ ...noAnnotations, fhirExports: [{ prefix: "fhir", dest: "x" }] });
    assert.deepEqual(orphan.problems, [
      {
        path: "fhirExports[0].store",
        message:
          "name the FHIR store (projects/P/locations/L/datasets/D/fhirStores/F): there is no annotations store to default to",
      },
    ]);
  });
});

describe("plan of the optional lanes (pure)", () => {
  const done = (result: unknown, input?: string): StepRecord => ({
    status: "done",
    ...(input === undefined ? {} : { input }),
    startedAt: "2026-12-02T06:00:00.000Z",
    finishedAt: "2026-12-02T06:01:00.000Z",
    attempts: 1,
    result,
  });

  test("the graph: the BigQuery lane needs no bucket; the FHIR lane needs the bucket's IAM; a finished run is replayed, --fresh-export verifies dataset and roles again", async () => {
    const config = validateConfig(await read("demo-lanes.json")).config!;
    const spec = specFor(config);
    const fresh = planRun(spec, emptyState());
    const lane = (l: string) => fresh.filter((p) => p.lane === l).map((p) => `${p.key} ← ${p.needs.join(",")}`);
    assert.deepEqual(lane("train.bq"), [
      "bigquery:train.bq ← ",
      "export:train.bq ← bigquery:train.bq",
      "wait:train.bq ← export:train.bq",
      "rows:train.bq ← wait:train.bq",
    ]);
    assert.deepEqual(lane("fhir"), ["export:fhir ← iam", "wait:fhir ← export:fhir", "mirror:fhir ← export:fhir"]);
    assert.ok(fresh.every((p) => p.action === "run"));

    // Every step recorded done, with the inputs the graph gives them.
    const state: RunState = { ...emptyState(), steps: {} };
    const inputs = new Map(siimWorkflow(spec, {} as never, {} as never).steps.map((d) => [d.key, d.options.input]));
    for (const p of fresh)
      state.steps[p.key] = done(
        p.key.startsWith("export:")
          ? { operation: `projects/p/locations/l/datasets/d/operations/${p.key}`, uriPrefix: "x" }
          : p.key.startsWith("rows:")
            ? { table: "bq://my-demo-project.siim_meta.train", numRows: 7 }
            : {},
        inputs.get(p.key),
      );
    const again = planRun(spec, state);
    const action = (plan: typeof again, key: string) => plan.find((p) => p.key === key)?.action;
    for (const key of ["bigquery:train.bq", "export:train.bq", "wait:train.bq", "rows:train.bq", "export:fhir"])
      assert.equal(action(again, key), "skip", key);
    assert.equal(action(again, "mirror:fhir"), "run", "the mirror runs every time (incremental)");
    assert.equal(
      again.find((p) => p.key === "rows:train.bq")?.summary,
      "bq://my-demo-project.siim_meta.train holds 7 rows",
    );
    const redo = planRun(spec, state, { freshExport: true });
    assert.equal(action(redo, "bigquery:train.bq"), "recheck");
    assert.match(redo.find((p) => p.key === "bigquery:train.bq")!.reason, /verified again because export:train\.bq/);
    for (const key of ["export:train.bq", "wait:train.bq", "rows:train.bq", "export:fhir", "wait:fhir"])
      assert.equal(action(redo, key), "run", key);
  });
});
