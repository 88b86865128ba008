import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm, symlink } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { systemClock } from "../../src/core/clock.ts";
import { listAccepted, placeholderDirectory } from "../../src/mirror/listing.ts";
import { MirrorTally } from "../../src/mirror/tally.ts";
import { NameFilter } from "../../src/mirror/plan.ts";
import type { RemoteObject, RemoteSource } from "../../src/mirror/ports.ts";

const o = (name: string, size = 5, extra: Partial<RemoteObject> = {}): RemoteObject => ({
  name,
  size,
  generation: "1",
  crc32c: "AAAAAA==",
  ...extra,
});

function source(pages: RemoteObject[][]): RemoteSource {
  return {
    async *listPages(_b, prefix) {
      assert.equal(prefix, "p/");
      for (const p of pages) yield p;
    },
    open: () => Promise.reject(new Error("not used")),
  };
}

test("listing stage: classified in order across pages; refusals, placeholders, no-hash and done reported", async () => {
  const events: string[] = [];
  const counts = { all: 0 };
  const got: string[] = [];
  const pages = [
    [o("p/", 0), o("p/a"), o("p/a/b")],
    [o("p/d/", 0), o("p/../x"), o("p/n", 3, { crc32c: undefined })],
  ];
  for await (const a of listAccepted(
    source(pages),
    "b",
    "p/",
    new NameFilter("p/"),
    {
      listed: () => events.push("listed"),
      refuse: (n, r) => events.push(`refuse ${n}: ${r.slice(0, 20)}`),
      directory: async (n, rel) => void events.push(`dir ${n} → '${rel}'`),
      noHash: () => events.push("nohash"),
      done: () => events.push("done"),
    },
    counts,
  ))
    got.push(`${a.rel}@${a.obj.name}`);
  assert.deepEqual(got, ["a@p/a", "n@p/n"]);
  assert.equal(counts.all, 6);
  assert.deepEqual(events, [
    "listed",
    "dir p/ → ''",
    "listed",
    "listed",
    "refuse p/a/b: 'a' is also an objec",
    "listed",
    "dir p/d/ → 'd'",
    "listed",
    "refuse p/../x: " + events[8]!.slice("refuse p/../x: ".length),
    "listed",
    "nohash",
    "done",
  ]);
  assert.match(events[8]!, /^refuse p\/\.\.\/x: /);
});

test("listing stage: other shards are counted in `all` but neither listed nor yielded", async () => {
  const counts = { all: 0 };
  let listed = 0;
  const names = Array.from({ length: 30 }, (_, i) => o(`p/f${String(i).padStart(2, "0")}`));
  const sink = {
    listed: () => listed++,
    refuse: assert.fail,
    directory: assert.fail,
    noHash: assert.fail,
    done: () => {},
  };
  let yielded = 0;
  for await (const _ of listAccepted(
    source([names]),
    "b",
    "p/",
    new NameFilter("p/", { index: 0, count: 3 }),
    sink,
    counts,
  ))
    yielded++;
  assert.equal(counts.all, 30);
  assert.equal(listed, yielded);
  assert.ok(yielded > 0 && yielded < 30, `${yielded} of 30 in shard 0/3`);
});

test("listing stage: folder placeholders become directories; a symlinked parent is refused; a dry run makes none", async () => {
  const dest = await mkdtemp(path.join(os.tmpdir(), "hcx-listing-"));
  try {
    const tally = new MirrorTally(
      () => {},
      systemClock,
      () => {},
    );
    await placeholderDirectory(new DirectoryGuard(dest), true, tally)("p/dry/", "dry");
    assert.ok(!existsSync(path.join(dest, "dry")));
    const make = placeholderDirectory(new DirectoryGuard(dest), false, tally);
    await make("p/a/b/", "a/b");
    assert.ok(statSync(path.join(dest, "a/b")).isDirectory());
    await symlink(os.tmpdir(), path.join(dest, "link"));
    await make("p/link/x/", "link/x");
    assert.deepEqual([tally.s.directories, tally.s.refused], [2, 1]);
    assert.match(tally.s.failures[0]?.reason ?? "", /symlink/);
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
});
