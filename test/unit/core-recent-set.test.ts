import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RecentSet } from "../../src/core/recent-set.ts";

describe("RecentSet", () => {
  it("keeps at most max members, forgetting the oldest added first", () => {
    const s = new RecentSet<string>(3);
    s.add("a").add("b").add("c");
    assert.deepEqual(
      ["a", "b", "c"].map((x) => s.has(x)),
      [true, true, true],
    );
    s.add("d");
    assert.equal(s.size, 3);
    assert.deepEqual(
      ["a", "b", "c", "d"].map((x) => s.has(x)),
      [false, true, true, true],
    );
    // Adding a member again does not evict anything or change its age.
    s.add("b");
    assert.equal(s.size, 3);
    s.add("e");
    assert.deepEqual(
      ["b", "c", "d", "e"].map((x) => s.has(x)),
      [false, true, true, true],
    );
  });

  it("stays bounded over a million adds", () => {
    const s = new RecentSet<number>(4096);
    for (let i = 0; i < 1_000_000; i++) s.add(i);
    assert.equal(s.size, 4096);
    assert.equal(s.has(999_999), true);
    assert.equal(s.has(1_000_000 - 4097), false);
  });

  it("refuses a size below 1", () => {
    assert.throws(() => new RecentSet(0), RangeError);
  });
});
