import { test } from "node:test";
import assert from "node:assert/strict";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { applyMask, createFields } from "../../src/emulator/healthcare/resource-fields.ts";
import { gcsWildcard, putInstance } from "../../src/emulator/healthcare/import-job.ts";
import { studyInstances, type DicomStoreRecord } from "../../src/emulator/healthcare/model.ts";
import { pageOf } from "../../src/emulator/healthcare/rpc.ts";
import { isParseFailure, parseStoredInstance } from "../../src/emulator/healthcare/stored-instance.ts";
import { ApiError } from "../../src/emulator/http-util.ts";
import { IamPolicies } from "../../src/emulator/healthcare/iam-policies.ts";
import { writePart10 } from "../../src/emulator/dataset/dicom-writer.ts";
import { reprDigest } from "../../src/emulator/healthcare/wado.ts";
import { expectedDigests, WANT_REPR_DIGEST } from "../../src/dicomweb/digest.ts";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { createHash } from "node:crypto";

test("gcsSource.uri wildcards: * stays in a segment, ** crosses them, ? is one character, the rest is literal", () => {
  const match = (pattern: string, names: string[]) => names.filter(gcsWildcard(pattern).test);
  const names = ["in/a.dcm", "in/b.DCM", "in/sub/c.dcm", "in/sub/d/e.dcm", "in/a+b.dcm", "in/ab.dcm", "inx/a.dcm"];
  assert.deepEqual(match("in/**.dcm", names), [
    "in/a.dcm",
    "in/sub/c.dcm",
    "in/sub/d/e.dcm",
    "in/a+b.dcm",
    "in/ab.dcm",
  ]);
  assert.deepEqual(match("in/*", names), ["in/a.dcm", "in/b.DCM", "in/a+b.dcm", "in/ab.dcm"]);
  assert.deepEqual(match("in/a?.dcm", names), ["in/ab.dcm"]);
  assert.deepEqual(match("in/a+b.dcm", names), ["in/a+b.dcm"], "no wildcard: one exact object");
  assert.deepEqual(match("in/**", names).length, 6);
  assert.equal(gcsWildcard("in/sub/**.dcm").prefix, "in/sub/");
});

test("pageOf: opaque tokens name the last item, so a page stays right when items are added before it", () => {
  const items = ["a", "b", "c", "d", "e"];
  const p1 = pageOf(items, new URLSearchParams("pageSize=2"), (x) => x);
  assert.deepEqual(p1.page, ["a", "b"]);
  const p2 = pageOf(["0", ...items], new URLSearchParams(`pageSize=2&pageToken=${p1.nextPageToken}`), (x) => x);
  assert.deepEqual(p2.page, ["c", "d"]);
  const p3 = pageOf(items, new URLSearchParams(`pageSize=2&pageToken=${p2.nextPageToken}`), (x) => x);
  assert.deepEqual(p3, { page: ["e"] });
  assert.throws(() => pageOf(items, new URLSearchParams("pageToken=bogus"), (x) => x), ApiError);
  assert.throws(() => pageOf(items, new URLSearchParams("pageSize=-1"), (x) => x), ApiError);
});

test("resource fields: defaults, validation, updateMask set/clear and immutable fields", () => {
  assert.deepEqual(createFields("dataset", "v1", {}), { timeZone: "UTC" });
  assert.throws(() => createFields("dataset", "v1", { timeZone: "Mars/Olympus" }), ApiError);
  assert.throws(() => createFields("fhirStore", "v1", {}), /version is required/);
  assert.deepEqual(createFields("fhirStore", "v1beta1", {}), { version: "STU3" });
  assert.throws(() => createFields("dicomStore", "v1", { labels: { Upper: "x" } }), /label key/);
  assert.throws(() =>
    createFields("dicomStore", "v1", { streamConfigs: [{ bigqueryDestination: { tableUri: "x" } }] }),
  );
  const cur = {
    labels: { a: "1" },
    notificationConfig: { pubsubTopic: "projects/p/topics/t", sendForBulkImport: true },
  };
  assert.deepEqual(applyMask("dicomStore", "v1", cur, {}, "notificationConfig.pubsubTopic"), {
    labels: { a: "1" },
    notificationConfig: { sendForBulkImport: true },
  });
  assert.deepEqual(cur.notificationConfig.pubsubTopic, "projects/p/topics/t", "the current config is not mutated");
  assert.throws(() => applyMask("fhirStore", "v1", { version: "R4" }, { version: "R5" }, "version"), /immutable/);
  assert.throws(() => applyMask("dicomStore", "v1", {}, {}, null), /updateMask is required/);
  assert.throws(() => applyMask("dicomStore", "v1", {}, {}, "colour"), /update_mask/);
});

test("stored instances: UIDs and tags from the file, failures for non-DICOM and bad UIDs", () => {
  const g = generateInstance(3, { seed: 2, instanceBytes: 2000, storeIndex: 9 });
  const s = parseStoredInstance(g.data());
  assert.ok(!isParseFailure(s));
  assert.equal(s.sopInstanceUid, g.sopInstanceUid);
  assert.equal(s.studyUid, g.studyUid);
  assert.equal(s.transferSyntax, "1.2.840.10008.1.2.1");
  assert.deepEqual(s.attributes["00100020"], { vr: "LO", Value: [g.patientId] });
  assert.deepEqual(s.attributes["00280010"], { vr: "US", Value: [g.side] });
  assert.ok(s.data().equals(g.data()));
  const junk = parseStoredInstance(Buffer.from("hello"));
  assert.ok(isParseFailure(junk) && /not a DICOM Part 10 file/.test(junk.reason));
  const badUid = writePart10("1.2.840.10008.5.1.4.1.1.7", "1.2.3", [
    { tag: 0x00080016, vr: "UI", value: "1.2.840.10008.5.1.4.1.1.7" },
    { tag: 0x00080018, vr: "UI", value: "1.2.3" },
    { tag: 0x0020000d, vr: "UI", value: "not.a.uid" },
    { tag: 0x0020000e, vr: "UI", value: "1.2.4" },
  ]);
  const bad = parseStoredInstance(badUid);
  assert.ok(isParseFailure(bad));
  assert.match(bad.reason, /invalid StudyInstanceUID/);
  assert.equal(bad.sopInstanceUid, "1.2.3");
});

test("IAM etags are compared as bytes: the URL-safe base64 gcloud sends back matches, a stale one does not", () => {
  const iam = new IamPolicies();
  const binding = { role: "roles/healthcare.dicomViewer", members: ["user:a@b.c"] };
  let p = iam.set("r", { policy: { bindings: [binding] } });
  for (let i = 0; i < 50 && !/[+/]/.test(p.etag); i++) p = iam.set("r", { policy: { bindings: [binding] } });
  assert.match(p.etag, /[+/]/, "found an etag whose URL-safe form differs");
  const urlSafe = Buffer.from(p.etag, "base64").toString("base64url");
  const next = iam.set("r", { policy: { bindings: [], etag: urlSafe } });
  assert.deepEqual(next.bindings, undefined);
  assert.throws(() => iam.set("r", { policy: { bindings: [], etag: urlSafe } }), /concurrent policy changes/);
});

test("Want-Repr-Digest: one Repr-Digest, in the algorithm of the highest weight; none for weight 0 or nothing asked", () => {
  const data = Buffer.from("an instance's bytes");
  const sha = `sha-256=:${createHash("sha256").update(data).digest("base64")}:`;
  const md5 = `md5=:${createHash("md5").update(data).digest("base64")}:`;
  const crc = `crc32c=:${crc32cBase64(data)}:`;
  assert.deepEqual(reprDigest(WANT_REPR_DIGEST, data), { "repr-digest": crc }, "hcexport's own ask");
  assert.deepEqual(reprDigest("sha-256=10, md5=3", data), { "repr-digest": sha });
  assert.deepEqual(reprDigest("sha-256=1, md5=5", data), { "repr-digest": md5 });
  assert.deepEqual(reprDigest(["md5=2", "sha-256=2"], data), { "repr-digest": sha }, "a tie: sha-256 before md5");
  assert.deepEqual(reprDigest("md5=0, sha-256=0", data), {});
  assert.deepEqual(reprDigest("sha-512=9", data), {}, "not one the emulator computes");
  assert.deepEqual(reprDigest(undefined, data), {});
  // What it sends is what the client parses and checks.
  const [announced] = expectedDigests(reprDigest(WANT_REPR_DIGEST, data));
  assert.deepEqual(announced, { algorithm: "crc32c", value: crc32cBase64(data), header: "repr-digest" });
});

test("studyInstances: a study's instances in store order, following pushes and in-place replacements", () => {
  const opts = { seed: 3, instanceBytes: 600, storeIndex: 0 };
  const [a, b, c] = [0, 1, 2].map((i) => generateInstance(i, opts));
  // Two instances of a's study (the second one made from c, moved into a's study).
  const c2 = { ...c!, studyUid: a!.studyUid };
  const store: DicomStoreRecord = {
    name: "s",
    instances: [a!, b!, c2],
    bySop: new Map([a!, b!, c2].map((i) => [i.sopInstanceUid, i])),
    config: {},
  };
  const sops = (study: string) => studyInstances(store, study).map((i) => i.sopInstanceUid);
  assert.deepEqual(sops(a!.studyUid), [a!.sopInstanceUid, c2.sopInstanceUid]);
  assert.deepEqual(sops(b!.studyUid), [b!.sopInstanceUid]);
  assert.deepEqual(sops("1.2.3"), []);
  const d = generateInstance(3, opts);
  putInstance(store, { ...d, studyUid: b!.studyUid });
  assert.deepEqual(sops(b!.studyUid), [b!.sopInstanceUid, d.sopInstanceUid], "a pushed instance is found");
  // Replaced in place (same SOP Instance UID, same length): moved back to its own study.
  putInstance(store, c!);
  assert.deepEqual(sops(a!.studyUid), [a!.sopInstanceUid]);
  assert.deepEqual(sops(c!.studyUid), [c!.sopInstanceUid]);
});
