import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { HttpError } from "../../src/core/errors.ts";
import { createStager } from "../../src/core/stage-pool.ts";
import type { PullEvent, PullSummary } from "../../src/dicomweb/pull.ts";
import { instancePath } from "../../src/dicomweb/land.ts";
import {
  ACCEPT_MULTIPART,
  ACCEPT_SINGLE,
  retrieveInstance,
  type RetrieveContext,
  type WadoPort,
} from "../../src/dicomweb/retrieve.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { barrierFor } from "../../src/core/barrier.ts";
import { CommitQueue } from "../../src/mirror/commit-queue.ts";
import { NotWhole, type IntoTarget } from "../../src/net/receive-into.ts";

// Which way `retrieveInstance` takes a single-instance answer: whole into a stager's buffer from
// the client's callbacks (`retrieveInto`) while the server answers one body of a known length
// that fits in memory, else the streaming way (`retrieve`), with the calls each way counted.

type Answer = { status: number; headers: Record<string, string>; bytes: Buffer };

/** A WADO port over `answer(path, accept)`: `retrieveInto` runs the chooser as the HTTP client does. */
function port(answer: (p: string, accept: string) => Answer) {
  const calls: Array<["into" | "stream", string]> = [];
  const src: Required<WadoPort> = {
    retrieveInto: async (p: string, accept: string, into: IntoTarget) => {
      calls.push(["into", accept]);
      const a = answer(p, accept);
      if (a.status >= 400) throw new HttpError({ status: a.status, method: "GET", url: p, message: "refused" });
      const buf = typeof into === "function" ? into(a.status, a.headers) : into;
      if (buf === undefined) throw new NotWhole();
      assert.equal(buf.byteLength, a.bytes.length, "the buffer is exactly Content-Length");
      buf.set(a.bytes);
      return { status: a.status, headers: a.headers };
    },
    retrieve: async (p: string, accept: string) => {
      calls.push(["stream", accept]);
      const a = answer(p, accept);
      if (a.status >= 400) throw new HttpError({ status: a.status, method: "GET", url: p, message: "refused" });
      return {
        status: a.status,
        headers: a.headers,
        body: (async function* () {
          for (let at = 0; at < a.bytes.length; at += 65536) yield a.bytes.subarray(at, at + 65536);
        })(),
      };
    },
  };
  return { src, calls };
}

const instances = [0, 1, 2].map((i) => generateInstance(i, { seed: 4, instanceBytes: 6_000, storeIndex: 0 }));
const big = generateInstance(9, { seed: 4, instanceBytes: 5 * 1024 * 1024, storeIndex: 0 });
const refOf = (x: (typeof instances)[number]) => ({
  study: x.studyUid,
  series: x.seriesUid,
  instance: x.sopInstanceUid,
});
const single = (bytes: Buffer, length = true): Answer => ({
  status: 200,
  headers: { "content-type": "application/dicom", ...(length ? { "content-length": String(bytes.length) } : {}) },
  bytes,
});

async function run(src: WadoPort, xs: ReadonlyArray<(typeof instances)[number]>) {
  const dest = await mkdtemp(path.join(os.tmpdir(), "hcx-whole-"));
  const events: PullEvent[] = [];
  const ctx: RetrieveContext = {
    source: src,
    dest,
    guard: new DirectoryGuard(dest),
    queue: new CommitQueue({ barrier: barrierFor(dest, false), maxDelayMs: 1 }),
    stager: createStager(0),
    commitFailed: (rel, err) => assert.fail(`${rel}: ${String(err)}`),
    accept: ACCEPT_SINGLE,
    summary: { downloaded: 0, bytes: 0, digestVerified: 0, retrieveRequests: 0 } as PullSummary,
    emit: (e) => events.push(e),
  };
  try {
    for (const x of xs) await retrieveInstance(ctx, refOf(x));
    await ctx.queue.flush();
    for (const x of xs) assert.deepEqual(readFileSync(path.join(dest, instancePath(refOf(x)))), x.data());
    return { ctx, events };
  } finally {
    await rm(dest, { recursive: true, force: true });
  }
}

const bytesOf = (p: string) => [...instances, big].find((x) => p.endsWith(x.sopInstanceUid))!.data();

describe("retrieveInstance: whole or streamed", () => {
  it("single-part answers with a Content-Length come in whole, one request each, none as a stream", async () => {
    const { src, calls } = port((p) => single(bytesOf(p)));
    const { ctx } = await run(src, instances);
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["into", "into", "into"],
    );
    assert.equal(ctx.summary.retrieveRequests, 3);
    assert.equal(ctx.summary.downloaded, 3);
  });

  it("an answer without a Content-Length is asked for again as a stream, and every later one streams", async () => {
    const { src, calls } = port((p) => single(bytesOf(p), false));
    const { ctx } = await run(src, instances);
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["into", "stream", "stream", "stream"],
    );
    assert.equal(ctx.whole, false);
    assert.equal(ctx.summary.retrieveRequests, 4, "the request whose body was not taken is counted");
  });

  it("an instance too big to hold in memory streams alone: the next one is asked for whole again", async () => {
    const { src, calls } = port((p) => single(bytesOf(p)));
    await run(src, [instances[0]!, big, instances[1]!]);
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["into", "into", "stream", "into"],
    );
  });

  it("a multipart-only server (406 to the single-part Accept): negotiated once, then multipart as a stream", async () => {
    const boundary = "b0undary";
    const { src, calls } = port((p, accept): Answer => {
      if (accept === ACCEPT_SINGLE) return { status: 406, headers: {}, bytes: Buffer.alloc(0) };
      const data = bytesOf(p);
      return {
        status: 200,
        headers: { "content-type": `multipart/related; type="application/dicom"; boundary=${boundary}` },
        bytes: Buffer.concat([
          Buffer.from(`--${boundary}\r\ncontent-type: application/dicom\r\n\r\n`),
          data,
          Buffer.from(`\r\n--${boundary}--\r\n`),
        ]),
      };
    });
    const { ctx, events } = await run(src, instances.slice(0, 2));
    assert.deepEqual(calls, [
      ["into", ACCEPT_SINGLE],
      ["stream", ACCEPT_MULTIPART],
      ["stream", ACCEPT_MULTIPART],
    ]);
    assert.equal(ctx.accept, ACCEPT_MULTIPART);
    assert.deepEqual(events.filter((e) => e.kind === "dicomweb.negotiated").length, 1);
  });
});
