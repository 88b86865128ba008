import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { pull, type DicomwebSource } from "../../src/dicomweb/pull.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { listFiles } from "../support/chaos.ts";
import { withTempDir } from "../support/temp-dir.ts";

const instances = Array.from({ length: 24 }, (_, i) =>
  generateInstance(i, { seed: 5, instanceBytes: 100_000, storeIndex: 0 }),
);

/**
 * A DICOMweb server double: one page of instances; each body is one whole chunk (as undici gives a
 * small answer). When the `abortAt`-th body has ended, the run is interrupted in the next
 * microtask: that instance is received whole by then and on its way to being written (on this
 * thread or a stage thread), while the retry loop around it gives up at once.
 */
function source(abortAt: number, ac: AbortController): DicomwebSource & { retrieved: number } {
  const s = {
    retrieved: 0,
    async search(p: string, q: Record<string, unknown>) {
      assert.equal(p, "instances");
      const offset = Number(q["offset"]);
      return instances.slice(offset, offset + Number(q["limit"])).map((x) => ({
        "0020000D": { vr: "UI", Value: [x.studyUid] },
        "0020000E": { vr: "UI", Value: [x.seriesUid] },
        "00080018": { vr: "UI", Value: [x.sopInstanceUid] },
      }));
    },
    async retrieve(wadoPath: string) {
      const inst = instances.find((x) => wadoPath.endsWith(`/instances/${x.sopInstanceUid}`))!;
      const data = inst.data();
      const body = Readable.from([data]);
      if (++s.retrieved === abortAt) body.once("end", () => queueMicrotask(() => ac.abort()));
      return {
        status: 200,
        headers: { "content-type": "application/dicom", "content-length": String(data.length) },
        body,
      };
    },
  };
  return s;
}

describe("dicomweb pull interrupted while an instance is being written", () => {
  for (const stageThreads of [0, 1]) {
    it(`waits for it and commits it: no temp file is left and nothing lands after it returns (${stageThreads} stage threads)`, () =>
      withTempDir("hcx-pull-interrupt-", async (dest) => {
        const ac = new AbortController();
        // The last one: the listing has ended, so pull goes straight to its last commit.
        const src = source(instances.length, ac);
        await assert.rejects(
          pull({
            source: src,
            label: "double",
            dest,
            search: "instances",
            concurrency: 2,
            fsync: false,
            stageThreads,
            signal: ac.signal,
          }),
          (e: unknown) => ac.signal.aborted && e === ac.signal.reason,
        );
        const now = await listFiles(dest);
        assert.deepEqual(
          now.filter((f) => f.includes(".hcx-tmp-")),
          [],
          "no temp file is left",
        );
        const pulled = now.filter((f) => f.endsWith(".dcm"));
        // Every body was received whole before the interruption, so every instance is committed.
        assert.equal(pulled.length, instances.length, `${pulled.length} instances pulled when pull returned`);
        for (const f of pulled) {
          const inst = instances.find((x) => f.endsWith(`${x.sopInstanceUid}.dcm`))!;
          assert.deepEqual(await readFile(path.join(dest, f)), inst.data(), f);
        }
        // A stage thread's late answer, or a commit after the return, would show here.
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(await listFiles(dest), now, "nothing changed after pull returned");
      }));
  }
});
