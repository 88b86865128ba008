import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { applyFieldsMask, parseFieldsMask } from "../../src/emulator/gcs/fields-mask.ts";
import { objectResource } from "../../src/emulator/gcs/resources.ts";
import type { ObjectMeta } from "../../src/emulator/types.ts";

describe("fields masks", () => {
  const body = {
    kind: "storage#objects",
    nextPageToken: "t",
    prefixes: ["a/"],
    items: [{ name: "a", size: "1", crc32c: "x", md5Hash: "y", metadata: { k: "v", j: "w" } }],
  };
  test("parenthesised sub-selections", () => {
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("nextPageToken,items(name,size)")), {
      nextPageToken: "t",
      items: [{ name: "a", size: "1" }],
    });
  });
  test("gcloud's slash paths", () => {
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("prefixes,items/name,items/metadata/k,nextPageToken")), {
      prefixes: ["a/"],
      items: [{ name: "a", metadata: { k: "v" } }],
      nextPageToken: "t",
    });
  });
  test("malformed masks are rejected", () => {
    assert.throws(() => parseFieldsMask("items(name"));
    assert.throws(() => parseFieldsMask("a,,b"));
  });
  test("nested parentheses, repeated paths merge, '*' keeps everything", () => {
    const mask = parseFieldsMask("items(name,metadata(k)),items/size,kind");
    assert.deepEqual(applyFieldsMask(body, mask), {
      kind: "storage#objects",
      items: [{ name: "a", size: "1", metadata: { k: "v" } }],
    });
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("*")), body);
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("items(*)")), { items: body.items });
    // A field asked for whole and then narrowed stays whole.
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("items,items/name")), { items: body.items });
    // Absent fields are simply left out.
    assert.deepEqual(applyFieldsMask(body, parseFieldsMask("items(owner,name)")), { items: [{ name: "a" }] });
  });
  test("gcloud's full listing mask parses", () => {
    const gcloud =
      "items/acl,items/bucket,items/cacheControl,items/contentType,items/crc32c,items/customTime,items/etag,items/generation,items/md5Hash,items/metadata,items/metageneration,items/name,items/size,items/storageClass,items/timeCreated,items/updated,kind,nextPageToken,prefixes";
    const mask = parseFieldsMask(gcloud);
    assert.deepEqual([...mask.keys()].sort(), ["items", "kind", "nextPageToken", "prefixes"]);
    assert.equal((mask.get("items") as Map<string, unknown>).size, 16);
  });
});

describe("object resources built through a mask", () => {
  const meta: ObjectMeta = {
    bucket: "b",
    name: "dir/x y.dcm",
    generation: "1700000000000001",
    metageneration: "1",
    size: 12,
    md5Hash: "md5==",
    crc32c: "crc=",
    contentType: "application/dicom",
    timeCreated: "2026-01-01T00:00:00.000Z",
    updated: "2026-01-01T00:00:00.000Z",
  };
  test("the full resource has every field clients read, size and generation as strings", () => {
    const r = objectResource(meta, "http://127.0.0.1:9");
    for (const k of [
      "kind",
      "id",
      "selfLink",
      "mediaLink",
      "name",
      "bucket",
      "generation",
      "metageneration",
      "contentType",
      "storageClass",
      "size",
      "md5Hash",
      "crc32c",
      "etag",
      "timeCreated",
      "updated",
    ])
      assert.ok(k in r, k);
    assert.equal(r["size"], "12");
    assert.equal(
      r["mediaLink"],
      "http://127.0.0.1:9/download/storage/v1/b/b/o/dir%2Fx%20y.dcm?generation=1700000000000001&alt=media",
    );
  });
  test("a mask builds only the selected fields, the same values as masking afterwards", () => {
    const mask = parseFieldsMask("name,size,crc32c,md5Hash,generation");
    assert.deepEqual(objectResource(meta, "http://h", mask), applyFieldsMask(objectResource(meta, "http://h"), mask));
    assert.deepEqual(Object.keys(objectResource(meta, "http://h", mask)), [
      "name",
      "generation",
      "size",
      "md5Hash",
      "crc32c",
    ]);
  });
});
