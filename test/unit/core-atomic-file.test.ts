import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, mkdir, readdir, readFile, symlink, writeFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { writeFileAtomic, replaceFileAtomic } from "../../src/core/atomic-file.ts";
import { DirectoryGuard } from "../../src/core/directory-guard.ts";
import { tempNameFor, tempWriterGone } from "../../src/core/temp-names.ts";
import { TEMP_MARKER } from "../../src/core/safe-path.ts";
import { crc32cBase64, md5Base64 } from "../../src/core/hashing.ts";
import { withZombie } from "../support/zombie.ts";
import { IntegrityError, UnsafeNameError } from "../../src/core/errors.ts";

async function* chunks(data: Buffer, size = 7): AsyncIterable<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
async function* failingAfter(data: Buffer): AsyncIterable<Uint8Array> {
  yield data.subarray(0, 5);
  throw Object.assign(new Error("socket reset"), { code: "ECONNRESET" });
}
async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  return out.sort();
}

describe("writeFileAtomic", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "hcx-atomic-"));
  after(() => rm(root, { recursive: true, force: true }));
  const data = Buffer.from("DICM".repeat(1000));

  test("writes verified bytes under the final name and leaves no temp file", async () => {
    const r = await writeFileAtomic(root, "s/se/i.dcm", chunks(data), {
      expected: { size: data.length, crc32c: crc32cBase64(data), md5: md5Base64(data) },
    });
    assert.equal(r.bytes, data.length);
    assert.deepEqual(await readFile(path.join(root, "s/se/i.dcm")), data);
    assert.deepEqual(await allFiles(root), ["s/se/i.dcm"]);
  });

  test("a hash mismatch leaves nothing under the final name (and keeps an older good file)", async () => {
    await writeFile(path.join(root, "s/se/old.dcm"), "old");
    await assert.rejects(
      writeFileAtomic(root, "s/se/old.dcm", chunks(data), { expected: { crc32c: "AAAAAA==" } }),
      IntegrityError,
    );
    await assert.rejects(
      writeFileAtomic(root, "s/se/new.dcm", chunks(data), { expected: { size: data.length + 1 } }),
      IntegrityError,
    );
    assert.equal(await readFile(path.join(root, "s/se/old.dcm"), "utf8"), "old");
    assert.deepEqual(await allFiles(root), ["s/se/i.dcm", "s/se/old.dcm"]);
  });

  test("a body that fails mid-stream leaves no partial file", async () => {
    await assert.rejects(writeFileAtomic(root, "s/se/partial.dcm", failingAfter(data)), /socket reset/);
    assert.deepEqual(await allFiles(root), ["s/se/i.dcm", "s/se/old.dcm"]);
  });

  test("refuses to write through a symlinked directory inside the root", async () => {
    const outside = await mkdtemp(path.join(os.tmpdir(), "hcx-outside-"));
    await symlink(outside, path.join(root, "link"));
    await assert.rejects(
      writeFileAtomic(root, "link/evil.dcm", chunks(data)),
      (e) => e instanceof UnsafeNameError && /symlink/.test(e.message),
    );
    assert.deepEqual(await readdir(outside), []);
    await rm(outside, { recursive: true });
  });

  test("refuses file/directory clashes both ways", async () => {
    await assert.rejects(writeFileAtomic(root, "s/se/i.dcm/child", chunks(data)), /exists as a file/);
    await mkdir(path.join(root, "adir"));
    await assert.rejects(writeFileAtomic(root, "adir", chunks(data)), /exists as a directory/);
  });

  test("refuses escaping names before touching the disk", async () => {
    await assert.rejects(writeFileAtomic(root, "../escape.txt", chunks(data)), UnsafeNameError);
    await assert.rejects(readFile(path.join(root, "..", "escape.txt")), { code: "ENOENT" });
  });

  test("a shared guard verifies each directory once", async () => {
    const guard = new DirectoryGuard(root);
    for (let i = 0; i < 3; i++) await writeFileAtomic(root, `g/${i}.bin`, chunks(data), { guard, fsync: false });
    assert.deepEqual((await readdir(path.join(root, "g"))).sort(), ["0.bin", "1.bin", "2.bin"]);
  });
});

describe("replaceFileAtomic", () => {
  test("replaces content whole and creates parents", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), "hcx-replace-"));
    after(() => rm(root, { recursive: true, force: true }));
    const file = path.join(root, ".hcexport", "state.json");
    await replaceFileAtomic(file, '{"a":1}');
    await replaceFileAtomic(file, '{"a":2}');
    assert.equal(await readFile(file, "utf8"), '{"a":2}');
    assert.deepEqual(await readdir(path.dirname(file)), ["state.json"]);
  });
});

describe("leftovers of a killed writer", () => {
  test("a temp file whose writer was SIGKILLed is recognised as dead and swept by the next replaceFileAtomic beside it", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-killed-"));
    after(() => rm(dir, { recursive: true, force: true }));
    // A child starts writing `state.json` atomically and is killed before the rename.
    const script = `import { writeFileAtomic } from ${JSON.stringify(path.resolve("src/core/atomic-file.ts"))};
      const hang = (async function* () { yield Buffer.from("partial"); await new Promise(() => {}); })();
      writeFileAtomic(${JSON.stringify(dir)}, "state.json", hang, { fsync: false });
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
    let temp: string | undefined;
    for (let i = 0; i < 200 && temp === undefined; i++) {
      temp = (await readdir(dir)).find((n) => n.includes(TEMP_MARKER));
      if (temp === undefined) await new Promise((r) => setTimeout(r, 25));
    }
    assert.ok(temp !== undefined, "the child left a temp file");
    assert.equal(tempWriterGone(temp), false, "its writer is still alive");
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.equal(tempWriterGone(temp), true, "its writer is gone");
    assert.equal(
      tempWriterGone(".state.json.hcx-tmp-0123456789ab"),
      false,
      "a name without host tag and pid is never judged dead",
    );
    await replaceFileAtomic(path.join(dir, "state.json"), "{}");
    assert.deepEqual(await readdir(dir), ["state.json"]);
    assert.equal(await readFile(path.join(dir, "state.json"), "utf8"), "{}");
  });

  test("a writer that exited but was not reaped (a zombie: tmux, a container's init) is gone too", async () => {
    await withZombie((zombie, parent) => {
      // Still answers kill(pid, 0): the case the pid check alone got wrong (a rerun kept the temp files).
      assert.doesNotThrow(() => process.kill(zombie, 0));
      // This host's tag, as every temp name of this process carries it, with the zombie's pid.
      const own = tempNameFor("x");
      const tag = own.slice(own.indexOf(TEMP_MARKER) + TEMP_MARKER.length).slice(0, 6);
      const name = `.state.json${TEMP_MARKER}${tag}${zombie.toString(36)}abcdef-3`;
      assert.equal(tempWriterGone(name), true, `pid ${zombie} is a zombie`);
      assert.equal(
        tempWriterGone(`.state.json${TEMP_MARKER}${tag}${parent.toString(36)}abcdef-3`),
        false,
        "its parent runs",
      );
    });
  });
});
