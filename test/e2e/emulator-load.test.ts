import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { cliIn } from "../support/cli.ts";
import { peer } from "../support/peers.ts";

/**
 * `hcexport emulator --load STORE=DIR` with files nobody here wrote (dcmtk's dump2dcm, explicit
 * and implicit VR), then `hcexport dicomweb pull`: every pulled file is the loaded file byte for
 * byte, QIDO-RS serves their own tags, and Resource Manager knows the new project's number.
 */
const dump2dcm = peer("dump2dcm");
const run = promisify(execFile);
const STORE = "projects/my-hospital/locations/europe-west4/datasets/rehearsal/dicomStores/ct";
const ROOT = "1.2.826.0.1.3680043.10.1511.88";

let tmp: string;
let child: ChildProcess | undefined;
let baseUrl: string;
let stderr = "";
const made = new Map<string, Buffer>();

before(async () => {
  if (dump2dcm.skip) return;
  tmp = await mkdtemp(path.join(os.tmpdir(), "hcx-load-"));
  const src = path.join(tmp, "mine");
  for (let s = 1; s <= 3; s++) {
    const dir = path.join(src, `study-${s}`);
    await mkdir(dir, { recursive: true });
    for (let i = 1; i <= 2; i++) {
      const sop = `${ROOT}.3.${s}.${i}`;
      const dump = [
        "(0008,0016) UI =CTImageStorage",
        `(0008,0018) UI [${sop}]`,
        "(0008,0060) CS [CT]",
        `(0010,0010) PN [Doe^Jane${s}]`,
        `(0010,0020) LO [PID-${s}]`,
        `(0020,000d) UI [${ROOT}.1.${s}]`,
        `(0020,000e) UI [${ROOT}.2.${s}]`,
        `(0020,0013) IS [${i}]`,
        "(0028,0002) US 1",
        "(0028,0004) CS [MONOCHROME2]",
        "(0028,0010) US 2",
        "(0028,0011) US 2",
        "(0028,0100) US 16",
        "(0028,0101) US 12",
        "(0028,0102) US 11",
        "(0028,0103) US 0",
        `(7fe0,0010) OW 000${s}\\000${i}\\0010\\0020`,
      ].join("\n");
      const dumpFile = path.join(tmp, `${s}-${i}.dump`);
      await writeFile(dumpFile, `${dump}\n`);
      const out = path.join(dir, i === 1 ? `${sop}.dcm` : `IM${i}`); // one without an extension
      await run("dump2dcm", [...(i === 2 ? ["+ti"] : []), dumpFile, out]);
      made.set(sop, await readFile(out));
    }
  }
  await writeFile(path.join(src, "README.txt"), "not DICOM\n");
  child = spawn(process.execPath, ["src/cli/main.ts", "emulator", "--load", `${STORE}=${src}`], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  let stdout = "";
  child.stdout!.setEncoding("utf8");
  for await (const chunk of child.stdout!) {
    stdout += chunk;
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(stdout);
    if (m !== null) {
      baseUrl = m[1]!;
      break;
    }
  }
  assert.ok(baseUrl, `the emulator did not start: ${stderr}`);
});

after(async () => {
  if (child !== undefined && child.exitCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGINT");
    await exited;
  }
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

test(
  "emulator --load + dicomweb pull returns the loaded files byte for byte",
  { skip: dump2dcm.skip, timeout: 120_000 },
  async () => {
    const project = (await (await fetch(`${baseUrl}/v1/projects/my-hospital`)).json()) as { projectNumber: string };
    assert.match(project.projectNumber, /^\d{12}$/);
    assert.match(stderr, /loaded: +6 instances/);
    assert.ok(stderr.includes(`service-${project.projectNumber}@gcp-sa-healthcare.iam.gserviceaccount.com`), stderr);
    assert.match(stderr, /skipped 1 files that are not DICOM, e\.g\. .*README\.txt/);

    // QIDO-RS answers the files' own tags, from explicit and implicit VR files alike.
    const rows = (await (
      await fetch(`${baseUrl}/v1/${STORE}/dicomWeb/instances?PatientID=PID-2&includefield=PatientName,Modality`)
    ).json()) as Record<string, { Value: unknown[] }>[];
    assert.equal(rows.length, 2);
    for (const r of rows) {
      assert.deepEqual(r["00100010"]!.Value, [{ Alphabetic: "Doe^Jane2" }]);
      assert.deepEqual(r["00080060"]!.Value, ["CT"]);
    }

    const dest = path.join(tmp, "pulled");
    const pulled = await cliIn(["--emulator", baseUrl, "dicomweb", "pull", STORE, dest], { cwd: tmp, env: {} });
    assert.equal(pulled.code, 0, pulled.stderr);
    const files = (await readdir(dest, { recursive: true, withFileTypes: true })).filter(
      (e) => e.isFile() && !path.relative(dest, e.parentPath).startsWith(".hcexport"),
    );
    assert.equal(files.length, made.size);
    for (const [sop, bytes] of made) {
      const [s] = sop.split(".").slice(-2);
      const got = await readFile(path.join(dest, `${ROOT}.1.${s}`, `${ROOT}.2.${s}`, `${sop}.dcm`));
      assert.ok(got.equals(bytes), `${sop} is the loaded file byte for byte`);
    }
  },
);
