import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
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
  it("valid UTF-8 names come back decoded, in byte order (not UTF-16 order), directories as `name/`", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-walk-utf8-"));
    try {
      // U+FF01 is EF BC 81 and U+1F600 is F0 9F 98 80: byte order puts U+FF01 first, UTF-16
      // order (0xFF01 against the surrogate 0xD83D) the emoji. `a-b` (0x2d) sorts before `a/`.
      for (const f of ["\u{1F600}", "\uFF01", "z", "a-b", "caf\u00e9"]) writeFileSync(path.join(dir, f), "");
      mkdirSync(path.join(dir, "a"));
      writeFileSync(path.join(dir, "a", "\u00e9t\u00e9"), "");
      const walked: LocalEntry[] = [];
      for await (const e of walkLocal(dir)) walked.push(e);
      assert.deepEqual(
        walked.map((e) => e.rel),
        ["a-b", "a/\u00e9t\u00e9", "caf\u00e9", "z", "\uFF01", "\u{1F600}"],
      );
      assert.ok(walked.every((e) => e.raw === undefined && e.type === "file"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("an error of a directory's read reaches the caller with its code, syscall and path, after what came before it", async () => {
    // A path longer than PATH_MAX (4,096 bytes), made by relative mkdirs: its readdir fails
    // with ENAMETOOLONG even for root, for whom permissions would not.
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-walk-error-"));
    const cwd = process.cwd();
    const seg = "n".repeat(250);
    try {
      writeFileSync(path.join(dir, "a-first"), "");
      process.chdir(dir);
      for (let i = 0; i < 18; i++) {
        mkdirSync(seg);
        process.chdir(seg);
      }
      process.chdir(cwd);
      const seen: string[] = [];
      await assert.rejects(
        async () => {
          for await (const e of walkLocal(dir)) seen.push(e.rel);
        },
        (err: NodeJS.ErrnoException) => {
          assert.equal(err.code, "ENAMETOOLONG");
          assert.equal(err.syscall, "scandir");
          assert.ok(err.path?.startsWith(dir), err.path);
          return true;
        },
      );
      assert.deepEqual(seen, ["a-first"]);
    } finally {
      process.chdir(cwd);
      execFileSync("rm", ["-rf", dir]);
    }
  });
});
