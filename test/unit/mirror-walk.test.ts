import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import { walkLocal, walkSync, type LocalEntry } from "../../src/mirror/local-walk.ts";

/** A tree with names that are not valid UTF-8 (Latin-1 bytes), below and above valid ones. */
async function latin1Tree(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-walk-raw-"));
  const b = (s: string) => Buffer.from(s, "latin1");
  const root = Buffer.from(dir);
  const join = (...parts: Buffer[]) => Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [p] : [Buffer.from("/"), p])));
  mkdirSync(join(root, b("caf\xe9")));
  writeFileSync(join(root, b("caf\xe9"), b("x")), "1");
  mkdirSync(join(root, b("caf\xe9"), b("sub")));
  writeFileSync(join(root, b("caf\xe9"), b("sub"), b("y")), "2");
  writeFileSync(join(root, b("\xe9t\xe9")), "3");
  mkdirSync(join(root, b("ok")));
  writeFileSync(join(root, b("ok"), b("d\xe9j\xe0")), "4");
  writeFileSync(join(root, b("ok"), b("plain")), "5");
  return dir;
}

describe("walkLocal (synchronous reads)", () => {
  it("names that are not UTF-8 keep their exact bytes at every depth; valid ones carry none", async () => {
    const dir = await latin1Tree();
    try {
      const walked: LocalEntry[] = [];
      for await (const e of walkLocal(dir)) walked.push(e);
      const raws = walked.map((e) => (e.raw === undefined ? `utf8:${e.rel}` : `raw:${e.raw.toString("latin1")}`));
      // Byte order: "caf\xe9/" < "ok/" < "\xe9t\xe9" (0x63 < 0x6f < 0xe9).
      assert.deepEqual(raws, [
        "raw:caf\xe9/sub/y",
        "raw:caf\xe9/x",
        "raw:ok/d\xe9j\xe0",
        "utf8:ok/plain",
        "raw:\xe9t\xe9",
      ]);
      assert.ok(walked.every((e) => e.type === "file"));
      // The display name is the lossy decoding of the same bytes.
      assert.equal(walked[0]!.rel, Buffer.from("caf\xe9/sub/y", "latin1").toString("utf8"));
      // The async walk is the sync one, entry for entry.
      assert.deepEqual([...walkSync(Buffer.from(dir))], walked);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an aborted signal stops the walk at the next directory", async () => {
    const dir = await latin1Tree();
    try {
      const ac = new AbortController();
      const seen: string[] = [];
      await assert.rejects(async () => {
        for await (const e of walkLocal(dir, ac.signal)) {
          seen.push(e.rel);
          ac.abort(new Error("stop here"));
        }
      }, /stop here/);
      // caf\xe9/sub/y, then caf\xe9/x from the listing already read; ok/ is not read.
      assert.equal(seen.length, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
