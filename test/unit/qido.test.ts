import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { includedTags, isFilteredQuery, qidoSearch, QIDO_LIMITS } from "../../src/emulator/healthcare/qido.ts";

const opts = { seed: 7, instanceBytes: 1000, storeIndex: 0 };
const instances = Array.from({ length: 12 }, (_, i) => generateInstance(i, opts));
const q = (p: Record<string, string> | Array<[string, string]> = {}) => new URLSearchParams(p);
const uidsOf = (rows: ReturnType<typeof qidoSearch>, tag = "00080018") => rows.map((r) => r[tag]!.Value![0] as string);

describe("QIDO-RS search (pure)", () => {
  test("limit/offset pages cover every instance once, in a stable order; past the end is empty", () => {
    const all = uidsOf(qidoSearch(instances, "instances", {}, q()));
    assert.deepEqual(
      all,
      instances.map((i) => i.sopInstanceUid),
    );
    const paged = [0, 5, 10].flatMap((o) =>
      uidsOf(qidoSearch(instances, "instances", {}, q({ limit: "5", offset: String(o) }))),
    );
    assert.deepEqual(paged, all);
    assert.deepEqual(qidoSearch(instances, "instances", {}, q({ offset: "12" })), []);
  });

  test("defaults and maxima per level; limit above the maximum is truncated silently", () => {
    assert.deepEqual(QIDO_LIMITS, {
      studies: { default: 100, max: 5000 },
      series: { default: 1000, max: 5000 },
      instances: { default: 1000, max: 50_000 },
    });
    const many = Array.from({ length: 5_100 }, (_, i) => generateInstance(i, opts));
    assert.equal(qidoSearch(many, "studies", {}, q()).length, 100);
    assert.equal(qidoSearch(many, "series", {}, q()).length, 1000);
    assert.equal(qidoSearch(many, "instances", {}, q()).length, 1000);
    assert.equal(qidoSearch(many, "studies", {}, q({ limit: "6000" })).length, 5000);
    assert.equal(qidoSearch(many, "series", {}, q({ limit: "100000" })).length, 5000);
    assert.equal(qidoSearch(many, "instances", {}, q({ limit: "100000" })).length, 5100);
    // the next page after a truncated one starts where the client thinks it should
    assert.equal(qidoSearch(many, "studies", {}, q({ limit: "6000", offset: "5000" })).length, 100);
  });

  test("each level returns its own attributes, keyed by upper-case 8-hex tags with vr and Value", () => {
    const [study] = qidoSearch(instances, "studies", {}, q({ limit: "1" }));
    assert.deepEqual(Object.keys(study!), [
      "00080020",
      "00080030",
      "00080050",
      "00080090",
      "00100010",
      "00100020",
      "00100030",
      "00100040",
      "0020000D",
      "00200010",
      "00201206",
      "00201208",
    ]);
    assert.deepEqual(study!["0020000D"], { vr: "UI", Value: [instances[0]!.studyUid] });
    assert.deepEqual(study!["00100010"], { vr: "PN", Value: [{ Alphabetic: instances[0]!.patientId }] });
    assert.deepEqual(study!["00080050"], { vr: "SH" }, "empty attributes carry only vr");
    const [series] = qidoSearch(instances, "series", {}, q({ limit: "1" }));
    assert.deepEqual(series!["00080060"], { vr: "CS", Value: ["CR"] });
    assert.deepEqual(series!["00201209"], { vr: "IS", Value: [1] });
    assert.equal(series!["00080018"], undefined);
    const [inst] = qidoSearch(instances, "instances", {}, q({ limit: "1" }));
    assert.deepEqual(inst!["00080016"], { vr: "UI", Value: ["1.2.840.10008.5.1.4.1.1.7"] });
    assert.deepEqual(inst!["00280010"], { vr: "US", Value: [instances[0]!.side] });
  });

  test("includefield: repeatable, comma lists, keywords or tags, and all; unknown names are 400", () => {
    const params = q([
      ["includefield", "ViewPosition"],
      ["includefield", "00101010,BodyPartExamined"],
      ["limit", "1"],
    ]);
    const [row] = qidoSearch(instances, "instances", {}, params);
    assert.deepEqual(row!["00185101"], { vr: "CS", Value: [instances[0]!.viewPosition] });
    assert.match(String(row!["00101010"]!.Value![0]), /^\d{3}Y$/);
    assert.deepEqual(row!["00180015"], { vr: "CS", Value: ["CHEST"] });
    const [all] = qidoSearch(instances, "instances", {}, q({ includefield: "all", limit: "1" }));
    for (const tag of ["00100040", "00185101", "0008103E", "00280011", "00100020"]) assert.ok(all![tag], tag);
    const [studyAll] = qidoSearch(instances, "studies", {}, q({ includefield: "all", limit: "1" }));
    assert.equal(studyAll!["00080018"], undefined, "includefield=all stays at the study level");
    assert.equal(includedTags(q({ includefield: "all" })), "all");
    assert.deepEqual([...(includedTags(q({ includefield: "0020000d" })) as Set<string>)], ["0020000D"]);
    assert.throws(
      () => qidoSearch(instances, "instances", {}, q({ includefield: "NoSuchKeyword" })),
      /invalid includefield "NoSuchKeyword"/,
    );
  });

  test("match filters: UIDs (also as lists), keywords, tags, wildcards; scopes from the path", () => {
    const uid = instances[4]!.studyUid;
    assert.deepEqual(uidsOf(qidoSearch(instances, "studies", {}, q({ StudyInstanceUID: uid })), "0020000D"), [uid]);
    assert.deepEqual(uidsOf(qidoSearch(instances, "studies", {}, q({ "0020000D": uid })), "0020000D"), [uid]);
    const two = `${instances[1]!.studyUid},${instances[2]!.studyUid}`;
    assert.equal(qidoSearch(instances, "studies", {}, q({ StudyInstanceUID: two })).length, 2);
    assert.equal(qidoSearch(instances, "instances", { study: uid }, q()).length, 1);
    assert.equal(qidoSearch(instances, "instances", { study: uid, series: instances[5]!.seriesUid }, q()).length, 0);
    const pa = instances.filter((i) => i.viewPosition === "PA").length;
    assert.equal(qidoSearch(instances, "instances", {}, q({ ViewPosition: "PA" })).length, pa);
    const pid = instances[3]!.patientId;
    assert.equal(qidoSearch(instances, "studies", {}, q({ PatientName: `${pid.slice(0, 8)}*` })).length, 1);
    assert.equal(qidoSearch(instances, "studies", {}, q({ PatientID: `${pid.slice(0, -1)}?` })).length, 1);
    assert.throws(
      () => qidoSearch(instances, "instances", {}, q({ Bogus: "1" })),
      /invalid QIDO-RS query parameter "Bogus"/,
    );
    assert.throws(() => qidoSearch(instances, "instances", {}, q({ limit: "-1" })), /invalid limit/);
    assert.throws(() => qidoSearch(instances, "instances", {}, q({ offset: "x" })), /invalid offset/);
  });

  test("isFilteredQuery decides 204 (filtered) versus [] (paging past the end)", () => {
    assert.equal(isFilteredQuery(q({ limit: "5", offset: "100", includefield: "all" }), {}), false);
    assert.equal(isFilteredQuery(q({ StudyInstanceUID: "1.2" }), {}), true);
    assert.equal(isFilteredQuery(q(), { study: "1.2" }), true);
  });
});
