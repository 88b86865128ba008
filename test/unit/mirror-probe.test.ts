import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { probeLocal } from "../../src/mirror/local-probe.ts";
import { Manifest } from "../../src/mirror/manifest.ts";
import { withTempDir } from "../support/temp-dir.ts";

const withTemp = (fn: (dir: string) => Promise<void>) => withTempDir("hcx-probe-", fn);

test("sessions: a re-sync may skip the walk only after every earlier run ended cleanly", async () => {
  await withTemp(async (dest) => {
    const first = Manifest.open(dest);
    assert.equal(first.beginRun().previousClean, false, "a new manifest has never seen a clean end");
    first.endRun();
    first.close();

    const second = Manifest.open(dest);
    assert.equal(second.beginRun().previousClean, true);
    // Killed here: no endRun, the row stays.
    second.close();

    const third = Manifest.open(dest);
    assert.equal(third.beginRun().previousClean, false, "a run that did not end leaves its row");
    const killed = new Set(sessionIds(dest).filter((id) => id !== "clean-end"));
    assert.equal(killed.size, 2, "the killed run's row and this one's");
    // A concurrent run (another --shard) that is still going when this one ends.
    const other = Manifest.open(dest);
    assert.equal(other.beginRun().previousClean, false);
    // This run walked and swept: the killed run's row goes (its pid is gone), the live one's stays.
    third.endRun({ swept: true, writerGone: (id) => killed.has(id) });
    third.close();
    assert.equal(sessionIds(dest).length, 2, "clean-end and the live run's row");
    const meanwhile = Manifest.open(dest, { readOnly: true });
    assert.equal(meanwhile.beginRun().previousClean, false, "the other run's row is still open");
    meanwhile.close();
    other.endRun();
    other.close();

    // A read-only open (a dry run) answers and writes nothing.
    const dry = Manifest.open(dest, { readOnly: true });
    assert.equal(dry.beginRun().previousClean, true);
    dry.endRun();
    dry.close();
    assert.deepEqual(sessionIds(dest), ["clean-end"]);
  });
});

test("sessions: without a sweep, a clean end clears only its own row; run rows carry a writer id", async () => {
  await withTemp(async (dest) => {
    const killed = Manifest.open(dest);
    killed.beginRun();
    killed.close();
    const [id] = sessionIds(dest);
    assert.match(id!, /^run\.hcx-tmp-[0-9a-f]{6}[0-9a-z]+[0-9a-f]{6}-\d+$/);
    const m = Manifest.open(dest);
    m.beginRun();
    m.endRun({ swept: false, writerGone: () => true });
    m.close();
    assert.deepEqual(sessionIds(dest).sort(), ["clean-end", id].sort());
  });
});

/** The `sessions` rows of `dest`'s manifest, read with SQLite directly. */
function sessionIds(dest: string): string[] {
  const db = new DatabaseSync(path.join(dest, ".hcexport", "manifest.sqlite"), { readOnly: true });
  try {
    return (db.prepare("SELECT id FROM sessions ORDER BY id").all() as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

test("sessions: a manifest from before the sessions table is not clean; a read-only open of one still answers", async () => {
  await withTemp(async (dest) => {
    await mkdir(path.join(dest, ".hcexport"));
    const db = new DatabaseSync(path.join(dest, ".hcexport", "manifest.sqlite"));
    db.exec(
      "CREATE TABLE files (name TEXT PRIMARY KEY, size INTEGER NOT NULL, generation TEXT NOT NULL, crc32c TEXT, md5 TEXT, etag TEXT, mtime_ns TEXT NOT NULL, ino TEXT NOT NULL) WITHOUT ROWID",
    );
    db.close();
    const dry = Manifest.open(dest, { readOnly: true });
    assert.equal(dry.beginRun().previousClean, false);
    dry.close();
    const m = Manifest.open(dest);
    assert.equal(m.beginRun().previousClean, false);
    m.endRun();
    m.close();
    const again = Manifest.open(dest);
    assert.equal(again.beginRun().previousClean, true);
    again.close();
  });
});

test("probeLocal: a file's lstat, a symlink or directory reported as such, a missing parent as nothing", async () => {
  await withTemp(async (dest) => {
    await mkdir(path.join(dest, "a", "b"), { recursive: true });
    await writeFile(path.join(dest, "a", "b", "f.dcm"), "12345");
    await symlink("/etc/hostname", path.join(dest, "a", "b", "link.dcm"));
    await mkdir(path.join(dest, "a", "b", "dir.dcm"));
    const guard = new DirectoryGuard(dest);
    const f = probeLocal(guard, "a/b/f.dcm");
    assert.equal(f?.type, "file");
    assert.equal(f?.state.size, 5);
    assert.match(f?.state.ino ?? "", /^\d+$/);
    assert.equal(probeLocal(guard, "a/b/link.dcm")?.type, "symlink");
    assert.equal(probeLocal(guard, "a/b/dir.dcm")?.type, "other");
    assert.equal(probeLocal(guard, "a/b/none.dcm"), undefined);
    assert.equal(probeLocal(guard, "a/missing/f.dcm"), undefined);
    assert.equal(probeLocal(guard, "a/b/f.dcm/x"), undefined, "a file as a parent is not a directory");
  });
});

test("probeLocal: a symlinked parent is never followed, however the target looks", async () => {
  await withTemp(async (root) => {
    const dest = path.join(root, "dest");
    const outside = path.join(root, "outside");
    await mkdir(path.join(outside, "b"), { recursive: true });
    await writeFile(path.join(outside, "b", "f.dcm"), "same size");
    await mkdir(dest);
    await symlink(outside, path.join(dest, "a"));
    const guard = new DirectoryGuard(dest);
    assert.equal(probeLocal(guard, "a/b/f.dcm"), undefined);
    // Nor is it remembered as a directory: the write path's ensure still refuses it.
    await assert.rejects(guard.ensure(["a", "b"], "a/b/f.dcm"), /symlink/);
  });
});
