import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { noFaults } from "../../src/emulator/types.ts";
import { Manifest } from "../../src/mirror/manifest.ts";
import { listFiles, prng, requireBuiltCli, seedFor, spawnCli } from "../support/chaos.ts";

/**
 * The commit stage under SIGKILL (issue #11): the built CLI mirrors into a destination and is
 * killed at seeded-random moments while batches are being synced, renamed and recorded. After
 * each kill: every file under a final name is byte-identical; the manifest vouches only for files
 * on disk. Over all later runs no file that had landed (with or without its manifest row) is
 * downloaded again: rows are trusted, row-less files are re-hashed. Finally a torn file (what a
 * power loss under --no-fsync can leave: a final name, the right size, wrong bytes, no row) is
 * detected by hash and downloaded again, and the tree ends byte-identical with no temp files.
 * Replay with HCX_COMMITCRASH_SEED=<seed>.
 */

const N = 400;
const KILLS = 8;
const B = "commit-crash";
let emu: RunningEmulator;
let tmp: string;
let cli: string;
const objects = new Map<string, Buffer>();

before(async () => {
  cli = requireBuiltCli();
  emu = await startEmulator();
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-commit-crash-"));
  emu.store.createBucket({ name: B, projectNumber: "1" });
  for (let i = 0; i < N; i++) {
    // One directory per few files, like SIIM's study/series layout.
    const name = `p/st${i % 37}/se${i % 11}/i${i}.dcm`;
    const data = Buffer.alloc(2000 + ((i * 7919) % 40_000), 1 + ((i * 31) % 255)); // never all zeros
    data.writeUInt32BE(i, 0);
    objects.set(name, data);
    emu.store.putObject(B, name, data, "application/dicom");
  }
});
after(async () => {
  await emu?.close();
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

/** Object names whose media was requested since the last clear. */
function mediaGetNames(): string[] {
  const names: string[] = [];
  for (const e of emu.requests.entries) {
    if (e.kind !== "object.media" || e.method !== "GET") continue;
    const i = e.path.indexOf("/o/");
    names.push(decodeURIComponent(e.path.slice(i + 3)));
  }
  return names;
}

/** The manifest's rows (read-only, as a rerun would see them after the kill). */
function manifestNames(dest: string): Set<string> {
  const file = path.join(dest, ".hcexport", "manifest.sqlite");
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    return new Set((db.prepare("SELECT name FROM files").all() as Array<{ name: string }>).map((r) => r.name));
  } finally {
    db.close();
  }
}

test(`${KILLS} SIGKILLs during commit batches: nothing that landed is downloaded again, row-less files are re-hashed, a torn one is caught`, async (t) => {
  const seed = seedFor("commitcrash");
  t.diagnostic(`seed ${seed} (replay: HCX_COMMITCRASH_SEED=${seed})`);
  const random = prng(seed);
  const dest = path.join(tmp, "out");
  const args = ["mirror", `gs://${B}/p`, dest, "--emulator", emu.baseUrl, "--concurrency", "8", "--json"];
  emu.faults = { ...noFaults, latencyMs: 15, pathFilter: "/download/" };
  /** Files that landed under their final names by some kill: never to be fetched again. */
  const landed = new Set<string>();
  let kills = 0;
  let rowless = 0;
  let committedAtKill = 0;
  const log: string[] = [];
  for (let cycle = 0; kills < KILLS; cycle++) {
    assert.ok(cycle < KILLS * 3, `too many runs finished before their kill: ${log.join(", ")}`);
    emu.requests.clear();
    const delayMs = 100 + Math.round(random() * 500);
    let timer: NodeJS.Timeout | undefined;
    const r = await spawnCli(cli, args, {
      cwd: tmp,
      onLine: (line, child) => {
        // Armed at the first committed file: the kill lands while later batches sync and commit.
        if (timer === undefined && line.includes('"action":"downloaded"'))
          timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
      },
    });
    clearTimeout(timer);
    const fetched = mediaGetNames();
    const again = fetched.filter((n) => landed.has(n.slice("p/".length)));
    assert.deepEqual(again, [], `run ${cycle} downloaded files that had already landed`);
    if (r.signal !== "SIGKILL") {
      assert.equal(r.code, 0, r.stderr);
      log.push(`+${delayMs}ms→finished`);
      // Start over from an empty destination so that every kill lands inside a mirror.
      await rm(dest, { recursive: true, force: true });
      landed.clear();
      continue;
    }
    kills++;
    const present = (await listFiles(dest)).filter((f) => !f.startsWith(".hcexport/"));
    const finals = present.filter((f) => !path.basename(f).includes(TEMP_MARKER));
    for (const rel of finals) {
      const want = objects.get(`p/${rel}`);
      assert.ok(want !== undefined, `unexpected file ${rel}`);
      assert.ok(
        (await readFile(path.join(dest, rel))).equals(want),
        `${rel} is not byte-identical after kill ${kills}`,
      );
    }
    const rows = manifestNames(dest);
    for (const name of rows) assert.ok(finals.includes(name), `the manifest vouches for ${name}, which is not on disk`);
    const noRow = finals.filter((f) => !rows.has(f));
    rowless += noRow.length;
    committedAtKill += rows.size;
    for (const f of finals) landed.add(f);
    log.push(
      `+${delayMs}ms→${finals.length} landed (${noRow.length} without a row), ${present.length - finals.length} temps`,
    );
  }
  t.diagnostic(`kills: ${log.join("; ")}`);
  t.diagnostic(`${committedAtKill} rows and ${rowless} row-less landed files seen across the kills`);

  // A torn file under a final name with no row: same size, wrong bytes.
  const victim = [...landed][0]!;
  const size = objects.get(`p/${victim}`)!.length;
  await writeFile(path.join(dest, victim), Buffer.alloc(size));
  const db = new DatabaseSync(path.join(dest, ".hcexport", "manifest.sqlite"));
  db.prepare("DELETE FROM files WHERE name = ?").run(victim);
  db.close();
  // And one landed file (row dropped, bytes right): hashed, not fetched.
  const unvouched = [...landed].find((f) => f !== victim)!;
  const db2 = new DatabaseSync(path.join(dest, ".hcexport", "manifest.sqlite"));
  db2.prepare("DELETE FROM files WHERE name = ?").run(unvouched);
  db2.close();

  emu.faults = { ...noFaults };
  emu.requests.clear();
  const final = await spawnCli(cli, args, { cwd: tmp });
  assert.equal(final.code, 0, final.stderr);
  const done = final.stdout
    .split("\n")
    .filter((l) => l.includes('"mirror.done"'))
    .map((l) => JSON.parse(l) as { summary: { downloaded: number; hashed: number; skipped: number } })[0];
  assert.ok(done !== undefined, final.stdout.slice(-2000));
  const fetched = mediaGetNames();
  assert.deepEqual(
    fetched.filter((n) => landed.has(n.slice("p/".length))),
    [`p/${victim}`],
    "of the files that had landed, only the torn one is downloaded again",
  );
  assert.equal(done.summary.downloaded, N - landed.size + 1);
  assert.ok(done.summary.hashed >= 2, `the torn and the row-less file were hashed (hashed ${done.summary.hashed})`);

  const all = await listFiles(dest);
  assert.deepEqual(
    all.filter((f) => f.includes(TEMP_MARKER)),
    [],
    "no temp files",
  );
  assert.deepEqual(
    all.filter((f) => !f.startsWith(".hcexport/")),
    [...objects.keys()].map((n) => n.slice("p/".length)).sort(),
  );
  for (const [name, data] of objects)
    assert.ok((await readFile(path.join(dest, name.slice("p/".length)))).equals(data), `${name} differs`);
  // Every file now has its row: a rerun fetches nothing.
  const m = Manifest.open(dest, { readOnly: true });
  try {
    for (const name of objects.keys()) assert.ok(m.get(name.slice("p/".length)) !== undefined, name);
  } finally {
    m.close();
  }
  emu.requests.clear();
  const noop = await spawnCli(cli, args, { cwd: tmp });
  assert.equal(noop.code, 0, noop.stderr);
  assert.equal(emu.requests.mediaGets(), 0);
});
