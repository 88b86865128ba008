import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { compareUtf8 } from "../../src/core/utf8-order.ts";
import { walkLocal, type LocalEntry } from "../../src/mirror/local-walk.ts";
import {
  NameFilter,
  decide,
  decideExtra,
  deleteBlocker,
  march,
  type Accepted,
  type LocalState,
  type Pair,
} from "../../src/mirror/plan.ts";
import type { ManifestEntry } from "../../src/mirror/manifest.ts";
import type { RemoteObject } from "../../src/mirror/ports.ts";
import { shardOf } from "../../src/mirror/shard.ts";

async function* from<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const i of items) yield i;
}
const obj = (name: string, size = 10, crc32c = "AAAAAA==", generation = "1"): RemoteObject => ({
  name,
  size,
  generation,
  crc32c,
});
const acc = (rel: string): Accepted => ({ rel, obj: obj(`p/${rel}`) });
const file = (rel: string): LocalEntry => ({ rel, type: "file" });

async function pairs(remote: string[], local: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const p of march(from(remote.map(acc)), from(local.map(file)))) out.push(describePair(p));
  return out;
}
function describePair(p: Pair): string {
  if (p.remote === undefined) return `dst:${p.local.rel}`;
  return p.local === undefined ? `src:${p.remote.rel}` : `both:${p.remote.rel}`;
}

describe("march (lock-step merge)", () => {
  test("pairs source-only, both and destination-only in byte order", async () => {
    assert.deepEqual(await pairs(["a", "b", "d"], ["b", "c", "d", "e"]), [
      "src:a",
      "both:b",
      "dst:c",
      "both:d",
      "dst:e",
    ]);
    assert.deepEqual(await pairs([], ["x"]), ["dst:x"]);
    assert.deepEqual(await pairs(["x"], []), ["src:x"]);
  });

  test("'a-b' sorts before 'a/b' on both sides: the walk yields full paths in listing order", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-walk-"));
    try {
      for (const f of ["a/b", "a-b", "a0", "a/c/d", "a.txt", "b", "é/x", "z"]) {
        await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
        await writeFile(path.join(dir, f), f);
      }
      await mkdir(path.join(dir, ".hcexport"));
      await writeFile(path.join(dir, ".hcexport", "manifest.sqlite"), "");
      await writeFile(path.join(dir, "a", ".b.hcx-tmp-123-1"), "partial");
      await symlink("/etc", path.join(dir, "link"));
      const walked: LocalEntry[] = [];
      for await (const e of walkLocal(dir)) walked.push(e);
      const rels = walked.map((e) => e.rel);
      // GCS lists names in byte order: '-' (0x2d) and '.' (0x2e) come before '/' (0x2f), '0' after it.
      assert.deepEqual(rels, ["a-b", "a.txt", "a/.b.hcx-tmp-123-1", "a/b", "a/c/d", "a0", "b", "link", "z", "é/x"]);
      assert.deepEqual([...rels].sort(compareUtf8), rels);
      assert.equal(walked.find((e) => e.rel === "link")?.type, "symlink");
      assert.equal(walked.find((e) => e.rel.includes(".hcx-tmp-"))?.type, "temp");
      // And the merge against a listing of the same names pairs every one of them.
      const listed = ["a-b", "a.txt", "a/b", "a/c/d", "a0", "b", "z", "é/x"];
      const merged: string[] = [];
      for await (const p of march(from(listed.map(acc)), from(walked))) merged.push(describePair(p));
      assert.deepEqual(merged, [
        "both:a-b",
        "both:a.txt",
        "dst:a/.b.hcx-tmp-123-1",
        "both:a/b",
        "both:a/c/d",
        "both:a0",
        "both:b",
        "dst:link",
        "both:z",
        "both:é/x",
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a naive per-directory sort would mis-pair: the march refuses out-of-order input", async () => {
    await assert.rejects(pairs(["a/b", "a-b"], []), /not in byte order/);
    await assert.rejects(pairs([], ["a/b", "a-b"]), /not in byte order/);
    await assert.rejects(pairs(["b", "b"], []), /not in byte order/);
  });

  test("a missing destination is an empty tree", async () => {
    const seen: LocalEntry[] = [];
    for await (const e of walkLocal(path.join(os.tmpdir(), "hcx-does-not-exist-" + process.pid))) seen.push(e);
    assert.deepEqual(seen, []);
  });
});

describe("decide (one pair)", () => {
  const o = obj("p/x", 10, "crcA", "7");
  const st = (over: Partial<LocalState> = {}): LocalState => ({
    type: "file",
    size: 10,
    mtimeNs: "100",
    ino: "5",
    ...over,
  });
  const entry = (over: Partial<ManifestEntry> = {}): ManifestEntry => ({
    name: "x",
    size: 10,
    generation: "7",
    crc32c: "crcA",
    mtimeNs: "100",
    ino: "5",
    ...over,
  });
  const cases: Array<[string, LocalState | undefined, ManifestEntry | undefined, ReturnType<typeof decide>]> = [
    ["no local file", undefined, undefined, { action: "download", why: "new" }],
    ["size differs", st({ size: 11 }), entry(), { action: "download", why: "size differs" }],
    ["manifest + stat prove it", st(), entry(), { action: "skip", record: false }],
    [
      "re-export, same bytes: new generation, same crc",
      st(),
      entry({ generation: "6" }),
      { action: "skip", record: true },
    ],
    [
      "remote content changed, same size",
      st(),
      entry({ crc32c: "crcB" }),
      { action: "download", why: "content differs" },
    ],
    ["local file touched since (mtime)", st({ mtimeNs: "101" }), entry(), { action: "hash" }],
    ["local file replaced (inode)", st({ ino: "6" }), entry(), { action: "hash" }],
    ["no manifest entry, same size", st(), undefined, { action: "hash" }],
    [
      "a symlink in the destination",
      st({ type: "symlink" }),
      entry(),
      { action: "refuse", reason: "the destination path is a symlink; refusing to replace or follow it" },
    ],
    [
      "not a regular file",
      st({ type: "other" }),
      undefined,
      { action: "refuse", reason: "the destination path exists and is not a regular file" },
    ],
  ];
  for (const [what, local, e, want] of cases) test(what, () => assert.deepEqual(decide(o, local, e), want));

  test("md5 is used when there is no crc32c", () => {
    const m: RemoteObject = { name: "p/x", size: 10, generation: "7", md5Hash: "md5A" };
    assert.deepEqual(decide(m, st(), entry({ crc32c: undefined, md5: "md5A" })), { action: "skip", record: false });
    assert.deepEqual(decide(m, st(), entry({ crc32c: undefined, md5: "md5B" })), {
      action: "download",
      why: "content differs",
    });
  });
});

describe("destination-only entries and the delete guard", () => {
  test("temp leftovers are ours; files only with --delete and only of this shard", () => {
    assert.equal(
      decideExtra({ rel: "a/.x.hcx-tmp-1", type: "temp" }, "p/a/.x.hcx-tmp-1", { delete: false }),
      "remove-temp",
    );
    assert.equal(decideExtra(file("a"), "p/a", { delete: false }), "keep");
    assert.equal(decideExtra(file("a"), "p/a", { delete: true }), "delete");
    const mine = shardOf("p/a", 3);
    assert.equal(decideExtra(file("a"), "p/a", { delete: true, shard: { index: mine, count: 3 } }), "delete");
    assert.equal(
      decideExtra(file("a"), "p/a", { delete: true, shard: { index: (mine + 1) % 3, count: 3 } }),
      "other-shard",
    );
  });

  test("nothing is deleted after any error or beyond --max-delete", () => {
    const clean = { failed: 0, refused: 0, complete: true };
    assert.equal(deleteBlocker(clean, 5, undefined), undefined);
    assert.equal(deleteBlocker(clean, 5, 5), undefined);
    assert.match(deleteBlocker(clean, 6, 5)!, /exceed --max-delete 5/);
    assert.match(deleteBlocker({ ...clean, failed: 1 }, 1, undefined)!, /failed/);
    assert.match(deleteBlocker({ ...clean, refused: 1 }, 1, undefined)!, /refused/);
    assert.match(deleteBlocker({ ...clean, complete: false }, 1, undefined)!, /listing/);
  });
});

describe("--shard K/N", () => {
  test("over N=3 every name lands in exactly one shard, the same one every time", () => {
    const names = Array.from({ length: 3000 }, (_, i) => `train/1.2.${i}/1.2.${i}.3/1.2.${i}.4.dcm`);
    const counts = [0, 0, 0];
    for (const n of names) {
      const shards = [0, 1, 2].filter(
        (k) => new NameFilter("train/", { index: k, count: 3 }).classify(n).kind === "accept",
      );
      assert.equal(shards.length, 1, n);
      assert.equal(shardOf(n, 3), shards[0]);
      assert.equal(shardOf(n, 3), shardOf(n, 3));
      counts[shards[0]!]!++;
    }
    for (const c of counts) assert.ok(c > 800 && c < 1200, `balanced: ${counts.join(",")}`);
    // Pinned values: a changed hash would silently reshuffle machines mid-migration.
    assert.deepEqual(
      ["a", "train/x.dcm", "é"].map((n) => shardOf(n, 3)),
      [shardOf("a", 3), shardOf("train/x.dcm", 3), shardOf("é", 3)],
    );
    assert.equal(shardOf("a", 1_000_003), 0xe40c292c % 1_000_003);
  });
});
