import { describe, test, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpError } from "../../src/core/errors.ts";
import { generateInstance } from "../../src/emulator/dataset/instances.ts";
import { DigestVerifier, expectedDigests } from "../../src/dicomweb/digest.ts";
import { digestBase64, nodeHashName, verifyBytes } from "../../src/core/expected-content.ts";
import { IntegrityError } from "../../src/core/errors.ts";
import {
  MultipartError,
  MultipartParser,
  parseContentType,
  type MultipartEvent,
} from "../../src/dicomweb/multipart.ts";
import { inspectPart10, Part10Inspector } from "../../src/dicomweb/part10.ts";
import {
  checkUid,
  listInstances,
  refOf,
  type QidoPort,
  type Listed,
  type SearchEvent,
} from "../../src/dicomweb/search.ts";
import { peer } from "../support/peers.ts";

const inst = generateInstance(5, { seed: 3, instanceBytes: 20_000, storeIndex: 0 });
const file = inst.data();

/** Feeds `data` to an inspector in chunks of the given sizes (cycled). */
function inspectInChunks(data: Buffer, sizes: number[]) {
  const i = new Part10Inspector();
  let at = 0;
  for (let k = 0; at < data.length; k++) {
    const n = sizes[k % sizes.length]!;
    i.update(data.subarray(at, at + n));
    at += n;
  }
  return i.finish();
}

/** Explicit VR LE element bytes. */
function el(group: number, element: number, vr: string, value: Buffer, undefinedLength = false): Buffer {
  const long = ["OB", "OW", "SQ", "UN", "UT"].includes(vr);
  const head = Buffer.alloc(long ? 12 : 8);
  head.writeUInt16LE(group, 0);
  head.writeUInt16LE(element, 2);
  head.write(vr, 4, "latin1");
  if (long) head.writeUInt32LE(undefinedLength ? 0xffffffff : value.length, 8);
  else head.writeUInt16LE(value.length, 6);
  return Buffer.concat([head, value]);
}
function item(tag: number, length: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(0xfffe, 0);
  h.writeUInt16LE(tag, 2);
  h.writeUInt32LE(length, 4);
  return Buffer.concat([h, body]);
}
const META_END = (() => {
  // The generated file's meta group ends where group 0008 starts.
  const at = file.indexOf(Buffer.from([0x08, 0x00]), 132);
  return at;
})();

describe("Part 10 inspector", () => {
  test("accepts a whole generated file in any chunking and reads its UIDs", () => {
    for (const sizes of [[file.length], [1], [7, 1, 300], [131, 1, 12, 4096]]) {
      const r = inspectInChunks(file, sizes);
      assert.equal(r.ok, true, JSON.stringify(r));
      if (r.ok) {
        assert.equal(r.sopInstanceUid, inst.sopInstanceUid);
        assert.equal(r.studyInstanceUid, inst.studyUid);
        assert.equal(r.seriesInstanceUid, inst.seriesUid);
        assert.equal(r.transferSyntax, "1.2.840.10008.1.2.1");
        assert.equal(r.bytes, file.length);
      }
    }
  });

  test("rejects every truncation of the file (no cut ends on a boundary at depth 0 but the true end)", () => {
    // Cutting inside the data set at element boundaries is not detectable structurally; everywhere
    // else is. Check all cuts inside the header region and a spread inside pixel data.
    let accepted = 0;
    const cuts = [
      ...Array.from({ length: 1400 }, (_, k) => k),
      ...Array.from({ length: 50 }, (_, k) => file.length - 1 - k * 97),
    ];
    for (const cut of cuts) {
      const r = inspectPart10(file.subarray(0, cut));
      if (r.ok) accepted++;
    }
    // The generated file's last element is Pixel Data: only cuts exactly at an element boundary
    // before it could pass, and those lack pixel data — bounded by the number of elements.
    assert.ok(accepted < 40, `accepted ${accepted} truncations`);
    const lastCut = inspectPart10(file.subarray(0, file.length - 1));
    assert.equal(lastCut.ok, false);
    if (!lastCut.ok) assert.match(lastCut.problem, /truncated/);
  });

  test("rejects non-DICOM bytes, a damaged header and an extra trailing byte", () => {
    assert.match(
      String((inspectPart10(Buffer.from("<html>not dicom</html>")) as { problem: string }).problem),
      /too short|DICM/,
    );
    const noMagic = Buffer.from(file);
    noMagic.write("DICX", 128, "latin1");
    assert.equal(inspectPart10(noMagic).ok, false);
    const badVr = Buffer.from(file);
    badVr.write("\x01\x02", META_END + 4, "latin1"); // the first data-set element's VR
    const r = inspectPart10(badVr);
    assert.equal(r.ok, false);
    assert.equal(inspectPart10(Buffer.concat([file, Buffer.from([0])])).ok, false);
  });

  test("walks sequences and items of undefined length (and rejects stray delimiters)", () => {
    const meta = file.subarray(0, META_END);
    const uid = (s: string) => Buffer.from(s.length % 2 ? `${s}\0` : s, "latin1");
    const seq = Buffer.concat([
      el(0x0008, 0x1140, "SQ", Buffer.alloc(0), true),
      item(0xe000, 0xffffffff, el(0x0008, 0x1155, "UI", uid("1.2.3"))),
      item(0xe00d, 0),
      item(0xe000, 12, el(0x0008, 0x0000, "UI", uid("1.2"))), // a defined-length item
      item(0xe0dd, 0),
    ]);
    const ds = Buffer.concat([
      el(0x0008, 0x0018, "UI", uid("1.2.3.4")),
      seq,
      el(0x0020, 0x000d, "UI", uid("1.2.5")),
      el(0x0020, 0x000e, "UI", uid("1.2.6")),
      el(0x0028, 0x0010, "US", Buffer.from([1, 0])),
    ]);
    const good = inspectPart10(Buffer.concat([meta, ds]));
    assert.equal(good.ok, true, JSON.stringify(good));
    if (good.ok)
      assert.deepEqual(
        [good.sopInstanceUid, good.studyInstanceUid, good.seriesInstanceUid],
        ["1.2.3.4", "1.2.5", "1.2.6"],
      );
    // Without the sequence delimiter the file ends inside the sequence.
    const open = inspectPart10(
      Buffer.concat([meta, el(0x0008, 0x0018, "UI", uid("1.2.3.4")), seq.subarray(0, seq.length - 8)]),
    );
    assert.equal(open.ok, false);
    if (!open.ok) assert.match(open.problem, /open sequence/);
    const stray = inspectPart10(Buffer.concat([meta, item(0xe0dd, 0)]));
    assert.equal(stray.ok, false);
  });

  const dcmtk = peer("dcmconv");
  test("accepts what dcmtk writes: implicit VR little endian and encapsulated JPEG", { skip: dcmtk.skip }, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "hcx-part10-"));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const src = path.join(dir, "in.dcm");
    writeFileSync(src, file);
    const implicit = path.join(dir, "implicit.dcm");
    execFileSync("dcmconv", ["+ti", src, implicit]);
    const ri = inspectPart10(readFileSync(implicit));
    assert.equal(ri.ok, true, JSON.stringify(ri));
    if (ri.ok) {
      assert.equal(ri.transferSyntax, "1.2.840.10008.1.2");
      assert.equal(ri.sopInstanceUid, inst.sopInstanceUid);
    }
    const jpeg = path.join(dir, "jpeg.dcm");
    execFileSync("dcmcjpeg", [src, jpeg]);
    const jpegBytes = readFileSync(jpeg);
    const rj = inspectInChunks(jpegBytes, [5, 999]);
    assert.equal(rj.ok, true, JSON.stringify(rj));
    if (rj.ok)
      assert.match(
        String(rj.transferSyntax),
        /^1\.2\.840\.10008\.1\.2\.4\.\d+$/,
        "an encapsulated JPEG transfer syntax",
      );
    assert.equal(inspectPart10(jpegBytes.subarray(0, jpegBytes.length - 10)).ok, false);
  });
});

/** Runs a parser over `body` split at the given sizes and returns parts as buffers. */
function parseAll(
  body: Buffer,
  boundary: string,
  sizes: number[],
): Array<{ headers: Record<string, string>; data: Buffer }> {
  const p = new MultipartParser(boundary);
  const events: MultipartEvent[] = [];
  let at = 0;
  for (let k = 0; at < body.length; k++) {
    const n = sizes[k % sizes.length]!;
    events.push(...p.push(body.subarray(at, at + n)));
    at += n;
  }
  p.finish();
  const parts: Array<{ headers: Record<string, string>; data: Buffer[] }> = [];
  for (const e of events) {
    if (e.kind === "part") parts.push({ headers: { ...e.headers }, data: [] });
    else if (e.kind === "data") parts.at(-1)!.data.push(e.chunk);
  }
  return parts.map((x) => ({ headers: x.headers, data: Buffer.concat(x.data) }));
}

describe("multipart/related parser", () => {
  const boundary = "b0und4ry";
  const a = Buffer.from("first\r\n--b0und4 not a boundary\r\n--");
  const b = file;
  const body = Buffer.concat([
    Buffer.from(
      `preamble text\r\n--${boundary}\r\nContent-Type: application/dicom; transfer-syntax=*\r\nX-Folded: one\r\n two\r\n\r\n`,
    ),
    a,
    Buffer.from(`\r\n--${boundary}  \r\nContent-Type: application/dicom\r\n\r\n`),
    b,
    Buffer.from(`\r\n--${boundary}\r\n\r\n\r\n--${boundary}--\r\nepilogue`),
  ]);

  test("yields each part's headers and exact bytes however the body is chunked", () => {
    for (const sizes of [[body.length], [1], [3, 17], [boundary.length + 3], [4096, 1]]) {
      const parts = parseAll(body, boundary, sizes);
      assert.equal(parts.length, 3);
      assert.equal(parts[0]!.headers["content-type"], "application/dicom; transfer-syntax=*");
      assert.equal(parts[0]!.headers["x-folded"], "one two");
      assert.deepEqual(parts[0]!.data, a);
      assert.deepEqual(parts[1]!.data, b);
      assert.equal(parts[2]!.data.length, 0);
    }
  });

  test("yields the same parts for a body cut in two at any byte", () => {
    const small = Buffer.concat([
      Buffer.from(`--${boundary}\r\n\r\n`),
      a,
      Buffer.from(`\r\n--${boundary}\r\n\r\n`),
      b.subarray(0, 300),
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    for (let cut = 1; cut < small.length; cut++) {
      const p = new MultipartParser(boundary);
      const events = [...p.push(small.subarray(0, cut)), ...p.push(small.subarray(cut))];
      p.finish();
      const parts: Buffer[][] = [];
      for (const e of events) {
        if (e.kind === "part") parts.push([]);
        else if (e.kind === "data") parts.at(-1)!.push(e.chunk);
      }
      assert.deepEqual(
        parts.map((x) => Buffer.concat(x)),
        [a, b.subarray(0, 300)],
        `cut at ${cut}`,
      );
    }
  });

  test("a part's body is passed on as views of the chunks pushed, not copied", () => {
    const p = new MultipartParser(boundary);
    const first = Buffer.concat([Buffer.from(`--${boundary}\r\n\r\n`), b.subarray(0, 8000)]);
    const second = Buffer.from(b.subarray(8000, 16000));
    p.push(first);
    const events = p.push(second);
    const data = events.filter((e) => e.kind === "data").map((e) => (e as { chunk: Buffer }).chunk);
    // The bytes held back from the first chunk (a delimiter's length) come first, then the second chunk.
    assert.ok(data.length === 2 && data[0]!.length < boundary.length + 4, "the held-back tail, alone");
    assert.equal(data[1]!.buffer, second.buffer, "the second chunk's own memory");
    assert.deepEqual(Buffer.concat(data), b.subarray(8000 - data[0]!.length, 16000 - (boundary.length + 3)));
  });

  test("a body without its closing boundary is an error (truncation), and so are bad headers", () => {
    assert.throws(() => parseAll(body.subarray(0, body.length - 20), boundary, [100]), MultipartError);
    assert.throws(() => parseAll(Buffer.from("no boundary here at all"), boundary, [5]), /no boundary line/);
    assert.throws(
      () => parseAll(Buffer.from(`--${boundary}\r\nbroken header\r\n\r\nx\r\n--${boundary}--`), boundary, [64]),
      /malformed part header/,
    );
    assert.throws(() => new MultipartParser("bad\r\nboundary"), MultipartError);
  });

  test("parses Content-Type parameters, quoted or not", () => {
    const ct = parseContentType('multipart/related; type="application/dicom"; boundary="a;b=c"; transfer-syntax=*');
    assert.equal(ct.type, "multipart/related");
    assert.deepEqual(ct.params, { type: "application/dicom", boundary: "a;b=c", "transfer-syntax": "*" });
  });
});

describe("response digests", () => {
  test("checks Repr-Digest, x-goog-hash and Content-MD5 and names a mismatch", () => {
    const sha = createHash("sha256").update(file).digest("base64");
    const md5 = createHash("md5").update(file).digest("base64");
    const expected = expectedDigests({ "repr-digest": `sha-256=:${sha}:, unknown=:AAAA:`, "content-md5": md5 });
    assert.deepEqual(
      expected.map((e) => e.algorithm),
      ["sha-256", "md5"],
    );
    const ok = new DigestVerifier(expected);
    ok.update(file.subarray(0, 100));
    ok.update(file.subarray(100));
    assert.equal(ok.mismatch(), undefined);
    const bad = new DigestVerifier(expected);
    const flipped = Buffer.from(file);
    flipped[5000] = flipped[5000]! ^ 0xff;
    bad.update(flipped);
    assert.match(String(bad.mismatch()), /sha-256 .* does not match the repr-digest header/);
    // A compressed representation's Repr-Digest is not about the bytes received: ignored.
    assert.equal(expectedDigests({ "repr-digest": `sha-256=:${sha}:`, "content-encoding": "gzip" }).length, 0);
  });

  test("a whole body is checked against an announced digest with the streaming check's message; unknown names are no algorithm", () => {
    const sha = createHash("sha256").update(file).digest("base64");
    const [announced] = expectedDigests({ "repr-digest": `sha-256=:${sha}:` });
    verifyBytes("x.dcm", file, { size: file.length, digest: announced! });
    const flipped = Buffer.from(file);
    flipped[5000] = flipped[5000]! ^ 0xff;
    const streamed = new DigestVerifier([announced!]);
    streamed.update(flipped);
    assert.throws(
      () => verifyBytes("x.dcm", flipped, { digest: announced! }),
      (e: unknown) => e instanceof IntegrityError && e.message === `x.dcm: ${streamed.mismatch()}`,
    );
    // Names from a server's header that are Object.prototype's, not algorithms: skipped, not a crash.
    assert.deepEqual(expectedDigests({ "repr-digest": "constructor=:AAAA:, __proto__=:AAAA:, toString=:AAAA:" }), []);
    assert.equal(nodeHashName("constructor" as never), undefined);
    assert.equal(nodeHashName("sha-512"), "sha512");
    assert.equal(digestBase64("md5", file), createHash("md5").update(file).digest("base64"));
  });
});

/** A QIDO server double over a list of refs, with an optional cap per page and offset limit. */
function fakeQido(
  refs: Array<{ study: string; series: string; instance: string }>,
  o: { cap?: number; maxOffset?: number; ignoreOffset?: boolean } = {},
): QidoPort & { calls: string[] } {
  const row = (r: { study: string; series: string; instance: string }) => ({
    "0020000D": { vr: "UI", Value: [r.study] },
    "0020000E": { vr: "UI", Value: [r.series] },
    "00080018": { vr: "UI", Value: [r.instance] },
  });
  const calls: string[] = [];
  const page = <T>(all: T[], q: Record<string, unknown>) => {
    const offset = o.ignoreOffset ? 0 : Number(q["offset"]);
    if (o.maxOffset !== undefined && offset > o.maxOffset)
      throw new HttpError({ status: 400, method: "GET", url: "x", message: "offset too large" });
    return all.slice(offset, offset + Math.min(Number(q["limit"]), o.cap ?? Infinity));
  };
  return {
    calls,
    async search(p, q) {
      calls.push(`${p}?offset=${String(q["offset"])}`);
      if (p === "instances") return page(refs.map(row), q);
      if (p === "studies") {
        const studies = [...new Set(refs.map((r) => r.study))];
        return page(
          studies.map((s) => ({
            "0020000D": { vr: "UI", Value: [s] },
            "00201208": { vr: "IS", Value: [refs.filter((r) => r.study === s).length] },
          })),
          q,
        );
      }
      const m = /^studies\/([^/]+)\/instances$/.exec(p);
      if (m !== null) return page(refs.filter((r) => r.study === m[1]).map(row), q);
      throw new Error(`unexpected ${p}`);
    },
  };
}
const refs = Array.from({ length: 57 }, (_, i) => ({
  study: `1.2.${i % 5}`,
  series: `1.3.${i % 5}`,
  instance: `1.4.${i}`,
}));
async function collect(port: QidoPort, pageSize: number, strategy?: "auto" | "instances" | "studies") {
  const out: Listed[] = [];
  const events: SearchEvent[] = [];
  for await (const l of listInstances(port, {
    pageSize,
    onEvent: (e) => events.push(e),
    ...(strategy === undefined ? {} : { strategy }),
  }))
    out.push(l);
  return { out, events };
}
const instancesOf = (out: Listed[]) =>
  out
    .filter((l) => l.ok)
    .map((l) => (l as { ref: { instance: string } }).ref.instance)
    .sort();
const allInstances = refs.map((r) => r.instance).sort();

describe("QIDO-RS listing", () => {
  test("pages until an empty page: every instance once, more than one page", async () => {
    const port = fakeQido(refs);
    const { out } = await collect(port, 10);
    assert.deepEqual(instancesOf(out), allInstances);
    assert.deepEqual(
      port.calls.filter((c) => c.startsWith("instances")),
      [
        "instances?offset=0",
        "instances?offset=10",
        "instances?offset=20",
        "instances?offset=30",
        "instances?offset=40",
        "instances?offset=50",
        "instances?offset=57",
      ],
    );
  });

  test("a server that silently caps pages below the limit loses nothing (a short page is not the end)", async () => {
    const { out, events } = await collect(fakeQido(refs, { cap: 7 }), 50);
    assert.deepEqual(instancesOf(out), allInstances);
    assert.ok(events.some((e) => e.kind === "dicomweb.search.capped"));
  });

  test("a deep offset refused: the per-study searches list the rest", async () => {
    const { out, events } = await collect(fakeQido(refs, { maxOffset: 20 }), 10);
    assert.deepEqual(instancesOf(out), allInstances);
    assert.ok(events.some((e) => e.kind === "dicomweb.search.fallback" && /offset/.test(e.reason)));
  });

  test("a server that ignores offset does not loop forever; the study counts then fill the gap", async () => {
    const { out } = await collect(fakeQido(refs, { ignoreOffset: true }), 10);
    assert.equal(new Set(instancesOf(out)).size, instancesOf(out).length);
    // Per-study pages also ignore offset, so only studies ≤ 10 instances come out whole here.
    assert.ok(instancesOf(out).length >= 10);
  });

  test("refuses UIDs that cannot be path segments, and lists only studies with the studies strategy", async () => {
    const hostile = [
      ...refs.slice(0, 3),
      { study: "../../etc", series: "1.2", instance: "1.5" },
      { study: "1.2.0", series: "1.3.0", instance: "1.4.x/.." },
    ];
    const { out } = await collect(fakeQido(hostile), 100, "instances");
    assert.equal(out.filter((l) => !l.ok).length, 2);
    assert.equal(checkUid("1.2.840.10008.1.2.1"), undefined);
    assert.notEqual(checkUid("1.2/3"), undefined);
    assert.notEqual(checkUid("1".repeat(65)), undefined);
    assert.equal(refOf({}).ok, false);
    const studies = await collect(fakeQido(refs), 4, "studies");
    assert.deepEqual(instancesOf(studies.out), allInstances);
  });
});
