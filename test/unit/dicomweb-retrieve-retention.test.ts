import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import type { Barrier } from "../../src/core/barrier.ts";
import { instancePath } from "../../src/dicomweb/land.ts";
import { ACCEPT_SINGLE, retrieveInstance, type RetrieveContext } from "../../src/dicomweb/retrieve.ts";
import type { PullSummary } from "../../src/dicomweb/pull.ts";
import { CommitQueue } from "../../src/mirror/commit-queue.ts";
import { createStager } from "../../src/core/stage-pool.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { collect } from "../support/collect.ts";

describe("retrieveInstance and the commit stage", () => {
  it("keeps no response alive while its instance waits for the batch's barrier", async () => {
    const dest = await mkdtemp(path.join(os.tmpdir(), "hcx-retention-"));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let barriers = 0;
    const barrier: Barrier = {
      kind: "fdatasync",
      data: async () => {
        barriers++;
        await held;
      },
      names: async () => {},
    };
    const queue = new CommitQueue({ barrier, maxDelayMs: 1 });
    const responses: Array<WeakRef<object>> = [];
    const instances = Array.from({ length: 12 }, (_, i) =>
      generateInstance(i, { seed: 9, instanceBytes: 8_000, storeIndex: 0 }),
    );
    const summary = { downloaded: 0, bytes: 0, digestVerified: 0, retrieveRequests: 0 } as PullSummary;
    const ctx: RetrieveContext = {
      source: {
        retrieve: async (wadoPath) => {
          const inst = instances.find((x) => wadoPath.endsWith(x.sopInstanceUid))!;
          const bytes = inst.data();
          // Stands for undici's response: its controller holds the socket read buffer (64 KiB).
          const body = {
            pinned: Buffer.alloc(64 * 1024),
            async *[Symbol.asyncIterator]() {
              for (let at = 0; at < bytes.length; at += 4096) yield bytes.subarray(at, at + 4096);
            },
          };
          responses.push(new WeakRef(body));
          return {
            status: 200,
            headers: { "content-type": "application/dicom", "content-length": String(bytes.length) },
            body,
          };
        },
      },
      dest,
      guard: new DirectoryGuard(dest),
      queue,
      stager: createStager(0),
      commitFailed: (rel, err) => assert.fail(`${rel}: ${String(err)}`),
      accept: ACCEPT_SINGLE,
      summary,
      emit: () => {},
    };
    try {
      for (const x of instances)
        await retrieveInstance(ctx, { study: x.studyUid, series: x.seriesUid, instance: x.sopInstanceUid });
      await new Promise((r) => setTimeout(r, 20));
      assert.ok(barriers >= 1, "the first batch is waiting at its barrier");
      assert.equal(summary.downloaded, 0, "nothing is committed while the barrier is held");
      await collect();
      const alive = responses.filter((r) => r.deref() !== undefined).length;
      assert.equal(alive, 0, `${alive} of ${responses.length} responses are still reachable from the commit queue`);
      release();
      await queue.flush();
      assert.equal(summary.downloaded, instances.length);
      for (const x of instances)
        assert.ok(
          existsSync(
            path.join(dest, instancePath({ study: x.studyUid, series: x.seriesUid, instance: x.sopInstanceUid })),
          ),
        );
    } finally {
      release();
      await rm(dest, { recursive: true, force: true });
    }
  });
});
