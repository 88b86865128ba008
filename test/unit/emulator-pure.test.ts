import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decideFault, mergeFaults, seededRandom, faultsApply } from "../../src/emulator/faults.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { applyFieldsMask, parseFieldsMask } from "../../src/emulator/gcs/fields-mask.ts";
import { compareUtf8 } from "../../src/core/utf8-order.ts";
import { parseRange } from "../../src/emulator/media.ts";

describe("faults", () => {
  test("off by default: nothing ever happens", () => {
    const r = seededRandom(7);
    for (let i = 0; i < 1000; i++) assert.equal(decideFault(noFaults, r, true).kind, "none");
  });
  test("rates are honoured and reproducible from a seed", () => {
    const cfg = { ...noFaults, rate503: 0.05, rate429: 0.05, resetRate: 0.02, truncateRate: 0.01, corruptRate: 0.01 };
    const count = (seed: number) => {
      const r = seededRandom(seed);
      const c: Record<string, number> = {};
      for (let i = 0; i < 20_000; i++) {
        const d = decideFault(cfg, r, true);
        const k = d.kind === "status" ? String(d.status) : d.kind;
        c[k] = (c[k] ?? 0) + 1;
      }
      return c;
    };
    const a = count(42);
    assert.deepEqual(a, count(42));
    assert.ok(Math.abs(a["503"]! / 20_000 - 0.05) < 0.01, JSON.stringify(a));
    assert.ok(Math.abs(a["reset"]! / 20_000 - 0.02) < 0.006, JSON.stringify(a));
    assert.ok(Math.abs(a["corrupt"]! / 20_000 - 0.01) < 0.005, JSON.stringify(a));
  });
  test("body faults only where there is a body; Retry-After when configured", () => {
    const r = seededRandom(1);
    assert.equal(decideFault({ ...noFaults, resetRate: 1 }, r, false).kind, "none");
    assert.deepEqual(decideFault({ ...noFaults, rate429: 1, retryAfterSeconds: 2 }, r, false), { kind: "status", status: 429, retryAfterSeconds: 2 });
  });
  test("admin paths never get faults; pathFilter narrows", () => {
    assert.equal(faultsApply({ ...noFaults, pathFilter: "" }, "/_emulator/faults"), false);
    assert.equal(faultsApply({ ...noFaults, pathFilter: "/download/" }, "/storage/v1/b"), false);
    assert.equal(faultsApply({ ...noFaults, pathFilter: "/download/" }, "/download/storage/v1/b/x/o/y"), true);
  });
  test("mergeFaults validates every field", () => {
    const { errors } = mergeFaults(noFaults, { rate503: 2, bogus: 1, latencyMs: -1 });
    assert.equal(errors.length, 3);
    assert.equal(mergeFaults(noFaults, { rate503: 0.5 }).config.rate503, 0.5);
  });
});

describe("fields masks", () => {
  const body = { kind: "storage#objects", nextPageToken: "t", prefixes: ["a/"], items: [{ name: "a", size: "1", crc32c: "x", md5Hash: "y", metadata: { k: "v", j: "w" } }] };
  test("parenthesised sub-selections", () => {
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("nextPageToken,items(name,size)")), { nextPageToken: "t", items: [{ name: "a", size: "1" }] });
  });
  test("gcloud's slash paths", () => {
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("prefixes,items/name,items/metadata/k,nextPageToken")), { prefixes: ["a/"], items: [{ name: "a", metadata: { k: "v" } }], nextPageToken: "t" });
  });
  test("malformed masks are rejected", () => {
    assert.throws(() => parseFieldsMask("items(name"));
    assert.throws(() => parseFieldsMask("a,,b"));
  });
});

describe("compareUtf8", () => {
  test("agrees with a byte-wise comparison of the UTF-8 encodings", () => {
    const alphabet = ["a", "b", "/", "-", ".", "~", "é", "\u{E000}", "\u{FFFD}", "\u{1F600}", "\u{10000}", "0"];
    const r = seededRandom(3);
    const pick = () => Array.from({ length: 1 + Math.floor(r() * 5) }, () => alphabet[Math.floor(r() * alphabet.length)]).join("");
    for (let i = 0; i < 5000; i++) {
      const a = pick();
      const b = pick();
      assert.equal(Math.sign(compareUtf8(a, b)), Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))), `${a} vs ${b}`);
    }
  });
});

describe("Range", () => {
  test("forms and edge cases", () => {
    assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=50-500", 100), { start: 50, end: 99 });
    assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
    assert.equal(parseRange("bytes=9-3", 100), undefined);
    assert.equal(parseRange("items=1-2", 100), undefined);
  });
});
