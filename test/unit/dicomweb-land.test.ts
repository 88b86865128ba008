import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { barrierFor } from "../../src/core/barrier.ts";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { HcexportError, IntegrityError, UnsafeNameError } from "../../src/core/errors.ts";
import { createStager } from "../../src/core/stage-pool.ts";
import { instancePath, land, type LandContext } from "../../src/dicomweb/land.ts";
import type { PullSummary } from "../../src/dicomweb/pull.ts";
import { writePart10 } from "../../src/emulator/dataset/dicom-writer.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { CommitQueue } from "../../src/mirror/commit-queue.ts";

// land(): one instance's bytes onto disk, whatever answer they came in. Small bodies of a known
// length are received whole into a stager's buffer; others stream to their temp file once the
// header has named them. Whatever goes wrong, nothing is left under a final name and no temp
// file stays behind.

const small = generateInstance(0, { seed: 7, instanceBytes: 6_000, storeIndex: 0 });
const other = generateInstance(1, { seed: 7, instanceBytes: 6_000, storeIndex: 0 });
const big = generateInstance(2, { seed: 7, instanceBytes: 5 * 1024 * 1024, storeIndex: 0 });
type Instance = typeof small;
const refOf = (x: Instance) => ({ study: x.studyUid, series: x.seriesUid, instance: x.sopInstanceUid });

/** A body in 64 KiB chunks, recording how far it was read. */
function body(bytes: Uint8Array, chunk = 65536) {
  const seen = { bytes: 0, ended: false };
  const it = (async function* () {
    for (let at = 0; at < bytes.length; at += chunk) {
      const c = bytes.subarray(at, at + chunk);
      seen.bytes += c.byteLength;
      yield c;
    }
    seen.ended = true;
  })();
  return { it, seen };
}

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function context(o: { maxInstanceBytes?: number } = {}) {
  // The destination sits one level down, so anything written beside it would show in `root`.
  const root = await mkdtemp(path.join(os.tmpdir(), "hcx-land-"));
  dirs.push(root);
  const dest = path.join(root, "dest");
  await mkdir(dest);
  const failed: string[] = [];
  const ctx: LandContext = {
    dest,
    guard: new DirectoryGuard(dest),
    queue: new CommitQueue({ barrier: barrierFor(dest, false), maxDelayMs: 1 }),
    stager: createStager(0),
    commitFailed: (rel) => failed.push(rel),
    summary: { downloaded: 0, bytes: 0, digestVerified: 0, retrieveRequests: 0 } as PullSummary,
    ...o,
  };
  return { ctx, dest, root, failed };
}

/** Every file under `dir`, relative. */
function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

const md5Header = (bytes: Uint8Array) => ({ "content-md5": createHash("md5").update(bytes).digest("base64") });

describe("land", () => {
  for (const [name, x, length] of [
    ["a small body of known length (received whole)", small, true],
    ["a small body of unknown length (a multipart part)", small, false],
    ["a big body (streamed to its temp file)", big, true],
  ] as const) {
    it(`${name}: lands under the name its UIDs give it, byte-identical, digest checked`, async () => {
      const { ctx, dest } = await context();
      const bytes = x.data();
      const { it: b, seen } = body(bytes);
      const sop = await land(ctx, b, md5Header(bytes), {
        expect: refOf(x),
        ...(length ? { length: bytes.length } : {}),
      });
      await ctx.queue.flush();
      assert.equal(sop, x.sopInstanceUid);
      assert.deepEqual(files(dest), [instancePath(refOf(x))]);
      assert.ok(readFileSync(path.join(dest, instancePath(refOf(x)))).equals(bytes));
      assert.equal(seen.bytes, bytes.length);
      assert.deepEqual(
        { downloaded: ctx.summary.downloaded, bytes: ctx.summary.bytes, verified: ctx.summary.digestVerified },
        { downloaded: 1, bytes: bytes.length, verified: 1 },
      );
    });
  }

  for (const [name, x] of [
    ["received whole", small],
    ["streamed", big],
  ] as const) {
    it(`${name}: a digest that does not match is an IntegrityError (retried), and nothing is left on disk`, async () => {
      const { ctx, dest } = await context();
      const bytes = x.data();
      const wrong = md5Header(Buffer.from("not these bytes"));
      await assert.rejects(
        land(ctx, body(bytes).it, wrong, { expect: refOf(x), length: bytes.length }),
        IntegrityError,
      );
      await ctx.queue.flush();
      assert.deepEqual(files(dest), []);
      assert.equal(ctx.summary.downloaded, 0);
    });
  }

  // 1 MiB: cut while the header is read; 4.5 MiB: cut once it streams (past IN_MEMORY, 4 MiB).
  for (const cap of [1024 * 1024, 4.5 * 1024 * 1024]) {
    it(`a body longer than the largest instance accepted (${cap / 2 ** 20} MiB) is cut off as soon as it passes it`, async () => {
      const { ctx, dest } = await context({ maxInstanceBytes: cap });
      const bytes = big.data();
      const { it: b, seen } = body(bytes);
      await assert.rejects(land(ctx, b, {}, { expect: refOf(big) }), /longer than the largest instance accepted/);
      assert.ok(seen.bytes <= cap + 65536, `read ${seen.bytes} bytes of a body cut at ${cap}`);
      await ctx.queue.flush();
      assert.deepEqual(files(dest), []);
    });
  }

  it("a body shorter than its Content-Length is an IntegrityError, nothing written", async () => {
    const { ctx, dest } = await context();
    const bytes = big.data();
    const cut = bytes.subarray(0, bytes.length - 1000);
    await assert.rejects(land(ctx, body(cut).it, {}, { expect: refOf(big), length: bytes.length }), IntegrityError);
    await ctx.queue.flush();
    assert.deepEqual(files(dest), []);
  });

  it("well-formed bytes of another instance are the server's answer: a plain error (not retried), nothing written", async () => {
    const { ctx, dest } = await context();
    const bytes = other.data();
    const err = await land(ctx, body(bytes).it, {}, { expect: refOf(small), length: bytes.length }).then(
      () => assert.fail("landed"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof HcexportError && !(err instanceof IntegrityError), String(err));
    assert.match((err as Error).message, /^asked for study [0-9.]+, the server sent a file of study [0-9.]+$/);
    await ctx.queue.flush();
    assert.deepEqual(files(dest), []);
  });

  it("a part that is not wanted is read to its end and not written", async () => {
    const { ctx, dest } = await context();
    const bytes = big.data();
    const { it: b, seen } = body(bytes);
    const got = await land(ctx, b, {}, { scope: { study: big.studyUid }, isWanted: () => false });
    assert.equal(got, undefined);
    assert.equal(seen.ended, true, "the rest of the part was consumed");
    await ctx.queue.flush();
    assert.deepEqual(files(dest), []);
  });

  for (const [what, uid] of [
    ["a traversal", ".."],
    ["a path separator", "1.2/../../x"],
    ["65 characters", "1".repeat(65)],
  ] as const) {
    it(`a UID in the file with ${what} is refused (UnsafeNameError) before anything is named after it`, async () => {
      const { ctx, root } = await context();
      const bytes = writePart10("1.2.840.10008.5.1.4.1.1.7", uid, [
        { tag: 0x00080016, vr: "UI", value: "1.2.840.10008.5.1.4.1.1.7" },
        { tag: 0x00080018, vr: "UI", value: uid },
        { tag: 0x0020000d, vr: "UI", value: "1.2.3" },
        { tag: 0x0020000e, vr: "UI", value: "1.2.3.4" },
      ]);
      for (const length of [bytes.length, undefined]) {
        await assert.rejects(
          land(ctx, body(bytes).it, {}, { scope: { study: "1.2.3" }, ...(length === undefined ? {} : { length }) }),
          UnsafeNameError,
        );
      }
      await ctx.queue.flush();
      assert.deepEqual(files(root), [], "no file anywhere under the destination's parent");
    });
  }
});
