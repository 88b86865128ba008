import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { NameFilter } from "../../src/mirror/plan.ts";

/** Hostile object names under the prefix `p/`: each must be refused with a reason, never mapped to a path. */
const hostile: Array<[string, RegExp]> = [
  ["p/x/../../escape", /'\.\.' path segment/],
  ["p/..", /'\.\.' path segment/],
  ["p/a//b", /empty path segment/],
  ["p/./a", /'\.' path segment/],
  ["p/a/.", /'\.' path segment/],
  ["p/dir/", /ends with '\/'/],
  ["p//abs", /absolute name/],
  ["p/back\\slash", /backslash/],
  ["p/..\\..\\win", /backslash/],
  ["p/nul\0byte", /NUL/],
  ["p/bell\u0007", /control character/],
  ["p/.hcexport/manifest.sqlite", /reserved/],
  ["p/x/.y.hcx-tmp-1-2", /temp marker/],
  [`p/${"x".repeat(256)}`, /longer than 255/],
  ["p/", /empty name/],
];

describe("hostile object names are refused", () => {
  for (const [name, reason] of hostile) {
    test(JSON.stringify(name).slice(0, 60), () => {
      const v = new NameFilter("p/").classify(name);
      assert.equal(v.kind, "refuse");
      assert.match((v as { reason: string }).reason, reason);
    });
  }

  test("a file and a directory of the same name: the file (listed first) lands, the child is refused", () => {
    const f = new NameFilter("p/");
    // Listing order: 'a' < 'a-x' < 'a/b' < 'a0'.
    assert.deepEqual(f.classify("p/a"), { kind: "accept", rel: "a" });
    assert.deepEqual(f.classify("p/a-x"), { kind: "accept", rel: "a-x" });
    assert.equal(f.classify("p/a/b").kind, "refuse");
    assert.equal(f.classify("p/a/c/d").kind, "refuse");
    assert.deepEqual(f.classify("p/a0"), { kind: "accept", rel: "a0" });
    assert.deepEqual(f.classify("p/b/c"), { kind: "accept", rel: "b/c" });
  });

  test("ordinary names, including unicode and odd but safe characters, are accepted", () => {
    const f = new NameFilter("p/");
    for (const n of ["p/1.2.840/1.2.840.1/1.2.840.1.2.dcm", "p/a b/c:d", "p/é/ü.dcm", "p/...x", "p/.hidden", "p/x.."]) {
      assert.equal(f.classify(n).kind, "accept", n);
    }
  });

  test("clashes are tracked across shards, so every shard agrees", () => {
    let refused = 0;
    for (let k = 0; k < 3; k++) {
      const f = new NameFilter("p/", { index: k, count: 3 });
      const verdicts = ["p/a", "p/a/b"].map((n) => f.classify(n));
      refused += verdicts.filter((v) => v.kind === "refuse").length;
    }
    assert.equal(refused, 1);
  });
});
