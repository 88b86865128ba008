import { test } from "node:test";
import assert from "node:assert/strict";
import { stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32cBase64 } from "../../src/core/hashing.ts";
import { check } from "../../src/mirror/check.ts";
import type { Manifest } from "../../src/mirror/manifest.ts";
import { withManifestDest } from "../support/manifest-dest.ts";
import type { RemoteObject } from "../../src/mirror/ports.ts";

const bytes = Buffer.from("the real object bytes, 40 of them.......");
const obj = (extra: Partial<RemoteObject> = {}): RemoteObject => ({
  name: "pre/f.dcm",
  size: bytes.length,
  generation: "7",
  crc32c: crc32cBase64(bytes),
  ...extra,
});
const file = { rel: "f.dcm", type: "file" as const };

const withDest = (fn: (dest: string, m: Manifest) => Promise<void>) => withManifestDest("hcx-check-", fn);

test("check stage: nothing on disk → download, unhashed", async () => {
  await withDest(async (dest, m) => {
    assert.deepEqual(await check({ rel: "f.dcm", obj: obj() }, undefined, dest, m), {
      kind: "download",
      hashed: false,
    });
  });
});

test("check stage: a file under its final name with no manifest row is re-verified by hash, never trusted", async () => {
  await withDest(async (dest, m) => {
    // A torn file (a power loss with --no-fsync): the right size, wrong bytes (zeros), no row.
    await writeFile(path.join(dest, "f.dcm"), Buffer.alloc(bytes.length));
    assert.deepEqual(await check({ rel: "f.dcm", obj: obj() }, file, dest, m), { kind: "download", hashed: true });
    // Zero-length: the size alone decides, no hash needed.
    await writeFile(path.join(dest, "f.dcm"), "");
    assert.deepEqual(await check({ rel: "f.dcm", obj: obj() }, file, dest, m), { kind: "download", hashed: false });
    // The right bytes (renamed by a run killed before its batch's rows): proven, with the row to commit.
    await writeFile(path.join(dest, "f.dcm"), bytes);
    const st = await stat(path.join(dest, "f.dcm"), { bigint: true });
    const c = await check({ rel: "f.dcm", obj: obj() }, file, dest, m);
    assert.equal(c.kind, "proven");
    assert.deepEqual(c.kind === "proven" ? c.entry : undefined, {
      name: "f.dcm",
      size: bytes.length,
      generation: "7",
      crc32c: obj().crc32c,
      md5: undefined,
      etag: undefined,
      mtimeNs: String(st.mtimeNs),
      ino: String(st.ino),
    });
    assert.equal(m.get("f.dcm"), undefined, "check writes no row itself");
  });
});

test("check stage: a manifest row with an unchanged stat skips without reading; a moved generation is recorded", async () => {
  await withDest(async (dest, m) => {
    await writeFile(path.join(dest, "f.dcm"), Buffer.alloc(bytes.length)); // wrong bytes, but vouched for
    const st = await stat(path.join(dest, "f.dcm"), { bigint: true });
    const row = {
      name: "f.dcm",
      size: bytes.length,
      generation: "7",
      crc32c: obj().crc32c,
      mtimeNs: String(st.mtimeNs),
      ino: String(st.ino),
    };
    m.put(row);
    m.flush();
    assert.deepEqual(await check({ rel: "f.dcm", obj: obj() }, file, dest, m), { kind: "skip" });
    const moved = await check({ rel: "f.dcm", obj: obj({ generation: "8" }) }, file, dest, m);
    assert.equal(moved.kind, "skip");
    assert.equal(moved.kind === "skip" ? moved.record?.generation : "", "8");
    // Touched since (mtime differs): the row no longer vouches; hashed, and the zeros are caught.
    m.put({ ...row, mtimeNs: "1" });
    assert.deepEqual(await check({ rel: "f.dcm", obj: obj() }, file, dest, m), { kind: "download", hashed: true });
  });
});

test("check stage: a symlink or a directory under the name is refused", async () => {
  await withDest(async (dest, m) => {
    const c = await check({ rel: ".hcexport", obj: obj() }, { rel: ".hcexport", type: "other" }, dest, m);
    assert.equal(c.kind, "refuse");
  });
});
