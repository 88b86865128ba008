import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { writeFileAtomic } from "../../src/core/atomic-file.ts";
import { tempNameFor, truncateUtf8 } from "../../src/core/temp-names.ts";
import { IntegrityError } from "../../src/core/errors.ts";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { sweepTempFiles } from "../../src/core/temp-sweep.ts";
import { NameFilter, compareLocal, compareRemoteLocal, decide, sameContent } from "../../src/mirror/plan.ts";
import type { RemoteObject } from "../../src/mirror/ports.ts";

/** The pure halves of issue #10 findings 9, 11, 13, 14 and 17. */

describe("temp names (finding 13)", () => {
  test("bounded to 255 UTF-8 bytes, cut at a code point, marker kept", () => {
    for (const name of ["a.dcm", `${"漢".repeat(80)}.dcm`, "😀".repeat(63), "x".repeat(255)]) {
      const t = tempNameFor(name);
      assert.ok(Buffer.byteLength(t) <= 255, `${Buffer.byteLength(t)} bytes`);
      assert.ok(t.includes(TEMP_MARKER));
      assert.ok(!t.includes("\uFFFD") && Buffer.from(t).toString() === t, "whole code points only");
    }
    assert.equal(truncateUtf8("漢漢漢", 7), "漢漢");
  });

  test("the sweep still recognises a truncated temp name", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-tmpname-"));
    try {
      const temp = path.join(dir, tempNameFor(`${"漢".repeat(84)}.dcm`));
      await writeFile(temp, "partial");
      await utimes(temp, new Date(0), new Date(0));
      assert.equal(await sweepTempFiles(dir, 60_000), 1);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a body longer than expected is cut (finding 11)", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-cap-"));
    let sent = 0;
    async function* endless() {
      for (;;) {
        sent += 4096;
        yield Buffer.alloc(4096);
      }
    }
    try {
      await assert.rejects(writeFileAtomic(dir, "f.bin", endless(), { expected: { size: 10_000 } }), IntegrityError);
      assert.ok(sent <= 16_384, `read ${sent} bytes`);
      assert.deepEqual(await readdir(dir), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("folder placeholders (finding 9)", () => {
  test("zero-byte names ending in '/' are directories; with bytes, or aliasing, they are refused", () => {
    const f = new NameFilter("p/");
    assert.deepEqual(f.classify("p/", 0), { kind: "directory", rel: "" });
    assert.deepEqual(f.classify("p/a/", 0), { kind: "directory", rel: "a" });
    assert.deepEqual(f.classify("p/a/b/", 0), { kind: "directory", rel: "a/b" });
    assert.equal(f.classify("p/c/", 3).kind, "refuse");
    assert.equal(f.classify("p/d//", 0).kind, "refuse");
    assert.equal(f.classify("p/../", 0).kind, "refuse");
    assert.deepEqual(f.classify("p/file", 5), { kind: "accept", rel: "file" });
    assert.equal(f.classify("p/file/", 0).kind, "refuse", "a file and a directory of one name");
  });
});

describe("no-hash objects (finding 17)", () => {
  const obj: RemoteObject = { name: "n", size: 10, generation: "5", etag: "E5" };
  const local = { type: "file" as const, size: 10, mtimeNs: "1", ino: "2" };
  const entry = { name: "n", size: 10, generation: "5", etag: "E5", mtimeNs: "1", ino: "2" };
  test("same size + generation (+ etag) recorded at download: skipped", () => {
    assert.equal(decide(obj, local, entry).action, "skip");
    assert.equal(decide({ ...obj, generation: "6" }, local, entry).action, "download");
    assert.equal(decide({ ...obj, etag: "E6" }, local, entry).action, "download");
  });
  test("without a manifest entry nothing can vouch for the file: downloaded, never 'equal by hash'", () => {
    assert.equal(decide(obj, local, undefined).action, "download");
    assert.equal(sameContent(obj, { md5: "x" }), false);
  });
});

describe("raw-byte local names (finding 14)", () => {
  const e = (s: string, raw?: Buffer) => ({ rel: s, type: "file" as const, ...(raw === undefined ? {} : { raw }) });
  test("Latin-1 names order by bytes and never equal an object name", () => {
    const e9 = Buffer.from("0-caf\xe9.txt", "latin1");
    const e8 = Buffer.from("0-caf\xe8.txt", "latin1");
    assert.ok(compareLocal(e(e8.toString(), e8), e(e9.toString(), e9)) < 0);
    assert.ok(compareLocal(e(e9.toString(), e9), e(e8.toString(), e8)) > 0);
    // U+FFFD (what a lossy decode gives) is not the raw byte 0xe9.
    assert.notEqual(compareRemoteLocal("0-caf\uFFFD.txt", e(e9.toString(), e9)), 0);
    assert.ok(compareRemoteLocal("0-cafe.txt", e(e9.toString(), e9)) < 0);
    assert.ok(compareRemoteLocal("1.txt", e(e9.toString(), e9)) > 0);
  });
});
