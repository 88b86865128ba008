import { describe, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { checkRelativeName, resolveInside } from "../../src/core/safe-path.ts";
import { UnsafeNameError } from "../../src/core/errors.ts";

describe("checkRelativeName", () => {
  const refused: Array<[string, RegExp]> = [
    ["", /empty/],
    ["../escape.txt", /'\.\.'/],
    ["data/../escape.txt", /'\.\.'/],
    ["data/x/../../escape2.txt", /'\.\.'/],
    ["data/..", /'\.\.'/],
    ["./a", /'\.'/],
    ["a/./b", /'\.'/],
    ["a/.", /'\.'/],
    ["dbl//slash.txt", /empty path segment/],
    ["dir/", /ends with '\/'/],
    ["/etc/passwd", /absolute/],
    ["a\\..\\..\\b", /backslash/],
    ["nul\0byte", /NUL/],
    ["line\nbreak", /control/],
    [".hcexport/manifest", /reserved/],
    [`x/.a.hcx-tmp-123`, /temp marker/],
    ["a/" + "x".repeat(256), /longer than 255/],
  ];
  for (const [name, why] of refused) {
    test(`refuses ${JSON.stringify(name).slice(0, 40)}`, () => {
      const r = checkRelativeName(name);
      assert.equal(r.ok, false);
      if (!r.ok) assert.match(r.reason, why);
    });
  }
  test("accepts ordinary export names, dots inside names and unicode", () => {
    for (const name of [
      "1.2.3/4.5.6/7.8.9.dcm",
      "a..b/c",
      "...x",
      ".hidden/file",
      "ünïcødé/文件.dcm",
      "sub/.hcexport/x",
    ]) {
      assert.equal(checkRelativeName(name).ok, true, name);
    }
  });
});

describe("resolveInside", () => {
  test("maps a good name under the root", () => {
    assert.equal(resolveInside("/dest", "a/b.dcm"), path.join("/dest", "a", "b.dcm"));
  });
  test("throws UnsafeNameError carrying the remote name", () => {
    assert.throws(
      () => resolveInside("/dest", "x/../../etc/passwd"),
      (e) => e instanceof UnsafeNameError && e.remoteName === "x/../../etc/passwd" && e.exitCode === 5,
    );
  });
});
