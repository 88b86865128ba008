import { test } from "node:test";
import assert from "node:assert/strict";
import { escapeControls, searchCsv, searchTable, valueText } from "../../src/cli/format-search.ts";
import { frameExtension, imageComplete, parseGetPath } from "../../src/dicomweb/get-target.ts";
import { keywordOf, tagOf } from "../../src/dicomweb/keywords.ts";
import { parseFilters, qidoQuery } from "../../src/dicomweb/query.ts";
import { parseUidsFile, scopeSearch } from "../../src/dicomweb/subset.ts";
import { matches } from "../../src/emulator/healthcare/qido.ts";

const rows = [
  {
    "00100010": { vr: "PN", Value: [{ Alphabetic: "Doe^Jane" }] },
    "00100020": { vr: "LO", Value: ['a,"b"\r\nc'] },
    "00081030": { vr: "LO", Value: ["x\u001b[31mred\u0007"] },
    "00200013": { vr: "IS", Value: [1, 2] },
    "7FE00010": { vr: "OB", BulkDataURI: "http://x/bulk" },
  },
  { "00100010": { vr: "PN" }, "00400275": { vr: "SQ", Value: [{}, {}] } },
];

test("CSV is RFC 4180: keyword header, quoted fields with doubled quotes, CRLF records, raw values", () => {
  assert.equal(
    searchCsv(rows),
    "PatientName,PatientID,StudyDescription,InstanceNumber,7FE00010,00400275\r\n" +
      'Doe^Jane,"a,""b""\r\nc",x\u001b[31mred\u0007,1\\2,<binary>,\r\n' +
      ",,,,,<2 items>\r\n",
  );
  assert.equal(searchCsv([]), "");
});

test("table: control characters escaped, every line within the width, cut cells end in …, columns left out are named", () => {
  assert.equal(escapeControls("a\nb\u001b\u009b\u2028"), "a\\nb\\x1b\\x9b\\x2028");
  for (const width of [200, 60, 30, 12]) {
    const out = searchTable(rows, width);
    const lines = out.trimEnd().split("\n");
    assert.ok(
      lines.every((l) => [...l].length <= width),
      `${width}:\n${out}`,
    );
    assert.ok(
      [...out].every((c) => c === "\n" || c.charCodeAt(0) >= 0x20),
      "no raw control characters",
    );
    if (width < 100) assert.match(out, /…/);
    if (width === 12) assert.match(lines.at(-1)!, /more column|^\(/);
  }
  assert.match(searchTable(rows), /^PatientName {2}PatientID/);
  assert.equal(searchTable([]), "(no results)\n");
  assert.equal(valueText({ vr: "PN", Value: [{ Alphabetic: "A^B", Ideographic: "I" }] }), "A^B=I");
});

test("keywords and tags both ways; filters as QIDO parameters", () => {
  assert.equal(tagOf("patientid"), "00100020");
  assert.equal(tagOf("(0010,0020)"), "00100020");
  assert.equal(tagOf("0008103e"), "0008103E");
  assert.equal(tagOf("Nope"), undefined);
  assert.equal(keywordOf("0020000d"), "StudyInstanceUID");
  assert.equal(keywordOf("00191001"), "00191001");
  assert.deepEqual(qidoQuery(parseFilters(["Modality=CR", "StudyDate=20190101-20190630"]), ["00100020"], true), {
    "00080060": "CR",
    "00080020": "20190101-20190630",
    includefield: ["00100020"],
    fuzzymatching: "true",
  });
  assert.throws(() => parseFilters(["Modality"]), /KEY=VALUE/);
  assert.throws(() => parseFilters(["Modality=CR", "00080060=MR"]), /twice/);
});

test("--uids files and get paths: UIDs checked, levels parsed, comments skipped", () => {
  assert.deepEqual(parseUidsFile("# c\n1.2.3\n\nstudies/1.2/series/1.3 # s\n/studies/1/series/2/instances/3/\n", "f"), [
    { study: "1.2.3" },
    { study: "1.2", series: "1.3" },
    { study: "1", series: "2", instance: "3" },
  ]);
  assert.throws(() => parseUidsFile("studies/../x\n", "f"), /f:1/);
  assert.throws(() => parseUidsFile("series/1.2\n", "f"), /not a UID/);
  assert.deepEqual(scopeSearch({ series: "1.5" }, []).query["0020000E"], "1.5");
  assert.equal(scopeSearch({ study: "1.4", series: "1.5" }, []).path, "studies/1.4/series/1.5/instances");
  assert.deepEqual(parseGetPath("studies/1.2/series/3/instances/4/frames/2,1"), {
    study: "1.2",
    series: "3",
    instance: "4",
    frames: [2, 1],
  });
  for (const bad of [
    "studies/1.2/series",
    "series/1",
    "studies/1/frames/1",
    "studies/1/series/2/instances/3/frames/0",
    "studies/a b",
  ])
    assert.throws(() => parseGetPath(bad), Error, bad);
  assert.equal(frameExtension("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"), "raw");
  assert.equal(frameExtension("image/jpeg"), "jpg");
  assert.equal(frameExtension("text/html"), undefined);
  assert.equal(imageComplete("jpeg", Buffer.from([0xff, 0xd8, 1, 2, 0xff, 0xd9])), true);
  assert.equal(imageComplete("jpeg", Buffer.from([0xff, 0xd8, 1, 2, 0xff])), false);
});

test("the local cloud's QIDO matching: UID lists, date ranges, wildcards, fuzzy person names", () => {
  const ui = { vr: "UI", Value: ["1.2.3"] };
  assert.ok(matches(ui, "1.2.4,1.2.3"));
  assert.ok(matches(ui, "1.2.4\\1.2.3"));
  assert.ok(!matches(ui, "1.2.*"), "no wildcards on UIDs");
  const da = { vr: "DA", Value: ["20190315"] };
  assert.ok(matches(da, "20190101-20190630"));
  assert.ok(matches(da, "-20190315"));
  assert.ok(matches(da, "20190315-"));
  assert.ok(!matches(da, "20190401-"));
  assert.ok(!matches({ vr: "DA" }, "20190101-20190630"), "an empty date is outside every range");
  const pn = { vr: "PN", Value: [{ Alphabetic: "Smith^John" }] };
  assert.ok(matches(pn, "Smith^*"));
  assert.ok(!matches(pn, "smith^john"), "exact matching is case-sensitive");
  assert.ok(matches(pn, "joh", true));
  assert.ok(matches(pn, "SMI", true));
  assert.ok(!matches(pn, "ohn", true), "fuzzy matches word prefixes");
  assert.ok(matches(pn, ""), "an empty key matches all");
});
