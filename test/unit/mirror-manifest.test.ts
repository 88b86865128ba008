import { test } from "node:test";
import assert from "node:assert/strict";
import { Manifest, type ManifestEntry } from "../../src/mirror/manifest.ts";
import { withManifestDest } from "../support/manifest-dest.ts";

const entry = (name: string, size = name.length): ManifestEntry => ({
  name,
  size,
  generation: "1",
  crc32c: `c-${name}`,
  mtimeNs: "1000",
  ino: "7",
});

/** Names in byte order across several read-ahead pages, astral and ≥ U+E000 ones included. */
const NAMES = [
  ...Array.from({ length: 700 }, (_, i) => `s/${String(i).padStart(4, "0")}.dcm`),
  "s/\u{1F600}.dcm",
  "s/\uFF01.dcm",
  "t/a-b",
  "t/a/b",
];

test("manifest get: answers in order from pages read ahead, and out of order alike", async () => {
  await withManifestDest("hcx-manifest-", async (_dest, m) => {
    for (const n of NAMES) if (!n.endsWith("3.dcm")) m.put(entry(n));
    m.flush();
    const expect = (n: string) => (n.endsWith("3.dcm") ? undefined : entry(n));
    const strip = (e: ManifestEntry | undefined) =>
      e === undefined ? undefined : { ...e, md5: undefined, etag: undefined };
    // In order (the check stage), then backwards, then scattered: the same answers.
    for (const n of NAMES) assert.deepEqual(m.get(n), strip(expect(n)), n);
    for (const n of [...NAMES].reverse()) assert.deepEqual(m.get(n), strip(expect(n)), n);
    for (let i = 0; i < NAMES.length; i += 97) assert.deepEqual(m.get(NAMES[i]!), strip(expect(NAMES[i]!)));
    assert.equal(m.get("a-before-everything"), undefined);
    assert.equal(m.get("z-after-everything"), undefined);
  });
});

test("manifest get: writes between lookups are seen (the read-ahead page is patched)", async () => {
  await withManifestDest("hcx-manifest-", async (_dest, m) => {
    for (const n of NAMES) m.put(entry(n));
    m.flush();
    assert.equal(m.get("s/0100.dcm")?.size, 10); // the page now holds the names after it
    m.put({ ...entry("s/0150.dcm"), size: 99, generation: "2" });
    assert.deepEqual([m.get("s/0150.dcm")?.size, m.get("s/0150.dcm")?.generation], [99, "2"]);
    m.remove("s/0160.dcm");
    assert.equal(m.get("s/0160.dcm"), undefined);
    m.put(entry("s/0170x.dcm", 5)); // a new name inside the page's range
    assert.equal(m.get("s/0170x.dcm")?.size, 5);
    assert.equal(m.get("s/0171.dcm")?.size, 10, "the rows after the inserted one are still found");
    m.flush();
    // A fresh open reads what was committed: the patches were the table's truth.
    m.close();
    const again = Manifest.open(_dest);
    try {
      assert.equal(again.get("s/0150.dcm")?.size, 99);
      assert.equal(again.get("s/0160.dcm"), undefined);
      assert.equal(again.get("s/0170x.dcm")?.size, 5);
    } finally {
      again.close();
    }
  });
});
