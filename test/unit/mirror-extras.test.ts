import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { tempNameFor } from "../../src/core/temp-names.ts";
import { systemClock, type Clock } from "../../src/core/clock.ts";
import { handleExtra } from "../../src/mirror/extras.ts";
import type { Manifest } from "../../src/mirror/manifest.ts";
import { withManifestDest } from "../support/manifest-dest.ts";
import type { MirrorEvent, MirrorOptions } from "../../src/mirror/mirror-types.ts";
import type { RemoteSource } from "../../src/mirror/ports.ts";
import { MirrorTally } from "../../src/mirror/tally.ts";

const noSource = {} as RemoteSource;

const withDest = (fn: (dest: string, m: Manifest) => Promise<void>) => withManifestDest("hcx-extras-", fn);

test("extras stage: our own live temp files are kept while young, removed once stale", async () => {
  await withDest(async (dest, m) => {
    // tempNameFor names carry this process's pid: a live writer, so only age can free them.
    const temp = tempNameFor("f.dcm");
    await writeFile(path.join(dest, temp), "partial");
    const opts: MirrorOptions = { source: noSource, bucket: "b", prefix: "p", dest };
    const tally = new MirrorTally(
      () => {},
      systemClock,
      () => {},
    );
    assert.equal(await handleExtra({ rel: temp, type: "temp" }, "p/", opts, m, tally, systemClock), "temp-left");
    assert.ok(existsSync(path.join(dest, temp)), "a young temp of a live writer stays");
    const later: Clock = { ...systemClock, now: () => Date.now() + 61_000 };
    assert.equal(await handleExtra({ rel: temp, type: "temp" }, "p/", opts, m, tally, later), "none");
    assert.ok(!existsSync(path.join(dest, temp)), "a stale one is removed");
  });
});

test("extras stage: a dead writer's temp is removed at once; a dry run removes nothing", async () => {
  await withDest(async (dest, m) => {
    // Same host tag, a pid that cannot be running.
    const dead = tempNameFor("g.dcm").replace(/(\.hcx-tmp-[0-9a-f]{6})[0-9a-z]+([0-9a-f]{6}-\d+)$/, "$1zzzzzz$2");
    await writeFile(path.join(dest, dead), "partial");
    const opts: MirrorOptions = { source: noSource, bucket: "b", prefix: "p", dest };
    const tally = new MirrorTally(
      () => {},
      systemClock,
      () => {},
    );
    const dry = await handleExtra({ rel: dead, type: "temp" }, "p/", { ...opts, dryRun: true }, m, tally, systemClock);
    assert.equal(dry, "temp-left");
    assert.ok(existsSync(path.join(dest, dead)));
    assert.equal(await handleExtra({ rel: dead, type: "temp" }, "p/", opts, m, tally, systemClock), "none");
    assert.ok(!existsSync(path.join(dest, dead)));
  });
});

test("extras stage: other files are pending deletes only with --delete (and in a dry run, counted)", async () => {
  await withDest(async (dest, m) => {
    const events: MirrorEvent[] = [];
    const tally = new MirrorTally(
      (e) => events.push(e),
      systemClock,
      () => {},
    );
    const opts: MirrorOptions = { source: noSource, bucket: "b", prefix: "p", dest };
    const local = { rel: "old.dcm", type: "file" as const };
    assert.equal(await handleExtra(local, "p/", opts, m, tally, systemClock), "none");
    assert.equal(m.pendingDeleteCount(), 0);
    assert.equal(await handleExtra(local, "p/", { ...opts, delete: true }, m, tally, systemClock), "pending-delete");
    assert.deepEqual([...m.pendingDeletes()], ["old.dcm"]);
    assert.equal(
      await handleExtra(local, "p/", { ...opts, delete: true, dryRun: true }, m, tally, systemClock),
      "pending-delete",
    );
    assert.equal(tally.s.wouldDelete, 1);
    assert.deepEqual(events, [{ kind: "mirror.delete", path: "old.dcm", action: "would-delete" }]);
  });
});
