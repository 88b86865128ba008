import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "undici";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { startEmulator, type RunningEmulator } from "../../src/emulator/server.ts";
import { crc32cBase64, md5Base64 } from "../../src/core/hashing.ts";
import { noFaults } from "../../src/emulator/types.ts";
import net from "node:net";

let emu: RunningEmulator;
const B = "it-bucket";

async function call(method: string, p: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(emu.baseUrl + p, {
    method: method as "GET",
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    ...(body === undefined
      ? {}
      : { body: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body) }),
  });
  const buf = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, buf, json: () => JSON.parse(buf.toString("utf8")) };
}

before(async () => {
  emu = await startEmulator();
  emu.store.createBucket({ name: B, projectNumber: "123" });
  for (let i = 0; i < 2300; i++)
    emu.store.putObject(
      B,
      `p/${String(i).padStart(5, "0")}.bin`,
      Buffer.from(`object ${i}`),
      "application/octet-stream",
    );
  for (const n of ["d/a/1", "d/a/2", "d/b/1", "d/c", "d/a-b", "d/a.b"])
    emu.store.putObject(B, n, Buffer.from(n), "text/plain");
  for (let i = 0; i < 1200; i++)
    for (const leaf of ["a", "b"])
      emu.store.putObject(B, `g/${String(i).padStart(4, "0")}/${leaf}`, Buffer.from(leaf), "text/plain");
  for (let i = 0; i < 300; i++)
    emu.store.putObject(B, `g/z${String(i).padStart(3, "0")}`, Buffer.from("z"), "text/plain");
});

/** Sends raw bytes on a fresh socket and returns everything the server sent back before closing. */
async function rawExchange(text: string): Promise<Buffer> {
  const socket = net.connect(emu.port, "127.0.0.1");
  const chunks: Buffer[] = [];
  socket.on("data", (d: Buffer) => chunks.push(d));
  socket.on("error", () => {});
  socket.write(text);
  await new Promise((resolve) => socket.on("close", resolve));
  return Buffer.concat(chunks);
}
after(() => emu.close());

describe("buckets", () => {
  test("insert, 409 conflict where you own it, invalid names", async () => {
    assert.equal(
      (await call("POST", "/storage/v1/b?project=proj-a", { name: "fresh-bucket", location: "us-central1" })).status,
      200,
    );
    const again = await call("POST", "/storage/v1/b?project=proj-a", { name: "fresh-bucket" });
    assert.equal(again.status, 409);
    assert.equal(again.json().error.errors[0].reason, "conflict");
    assert.match(again.json().error.message, /you already own it/);
    const other = await call("POST", "/storage/v1/b?project=proj-b", { name: "fresh-bucket" });
    assert.match(other.json().error.message, /not available/);
    assert.equal((await call("POST", "/storage/v1/b?project=proj-a", { name: "Bad_Name!" })).status, 400);
    const got = (await call("GET", "/storage/v1/b/fresh-bucket")).json();
    assert.equal(got.location, "US-CENTRAL1");
    assert.equal((await call("GET", "/storage/v1/b/nope-bucket")).status, 404);
  });
});

describe("listing", () => {
  test("pages of at most 1000 in byte order, covering every object once", async () => {
    const names: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = (await call("GET", `/storage/v1/b/${B}/o?prefix=p/${token ? `&pageToken=${token}` : ""}`)).json();
      assert.ok(r.items.length <= 1000);
      names.push(...r.items.map((i: { name: string }) => i.name));
      token = r.nextPageToken;
      pages++;
    } while (token !== undefined);
    assert.equal(pages, 3);
    assert.equal(names.length, 2300);
    assert.deepEqual(names, [...names].sort());
  });
  test("delimiter gives prefixes, counted against maxResults, across pages", async () => {
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const r = (
        await call(
          "GET",
          `/storage/v1/b/${B}/o?prefix=d/&delimiter=/&maxResults=2${token ? `&pageToken=${token}` : ""}`,
        )
      ).json();
      seen.push(
        ...(r.prefixes ?? []).map((p: string) => `P:${p}`),
        ...(r.items ?? []).map((i: { name: string }) => i.name),
      );
      assert.ok((r.prefixes?.length ?? 0) + (r.items?.length ?? 0) <= 2);
      token = r.nextPageToken;
    } while (token !== undefined);
    assert.deepEqual(seen.sort(), ["P:d/a/", "P:d/b/", "d/a-b", "d/a.b", "d/c"].sort());
  });
  test("fields masks shape the response; size and generation are strings", async () => {
    const r = (
      await call("GET", `/storage/v1/b/${B}/o?prefix=d/&fields=nextPageToken,items(name,size,generation,crc32c)`)
    ).json();
    assert.deepEqual(Object.keys(r), ["items"]);
    assert.deepEqual(Object.keys(r.items[0]).sort(), ["crc32c", "generation", "name", "size"]);
    assert.equal(typeof r.items[0].size, "string");
    assert.equal(typeof r.items[0].generation, "string");
  });
  test("delimiter listing over >1000 entries: prefixes and items split across pages, none twice", async () => {
    const prefixes: string[] = [];
    const items: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const r = (
        await call(
          "GET",
          `/storage/v1/b/${B}/o?prefix=g/&delimiter=/&fields=${encodeURIComponent("prefixes,items/name,nextPageToken")}${token ? `&pageToken=${token}` : ""}`,
        )
      ).json();
      assert.ok((r.prefixes?.length ?? 0) + (r.items?.length ?? 0) <= 1000);
      prefixes.push(...(r.prefixes ?? []));
      items.push(...(r.items ?? []).map((i: { name: string }) => i.name));
      if (r.items) assert.deepEqual(Object.keys(r.items[0]), ["name"]);
      token = r.nextPageToken;
      pages++;
    } while (token !== undefined);
    assert.equal(pages, 2);
    assert.deepEqual(
      prefixes,
      Array.from({ length: 1200 }, (_, i) => `g/${String(i).padStart(4, "0")}/`),
    );
    assert.deepEqual(
      items,
      Array.from({ length: 300 }, (_, i) => `g/z${String(i).padStart(3, "0")}`),
    );
  });
  test("includeTrailingDelimiter lists a directory marker object as an item too", async () => {
    emu.store.putObject(B, "t/dir/", Buffer.alloc(0), "application/x-directory");
    emu.store.putObject(B, "t/dir/f", Buffer.from("f"), "text/plain");
    const plain = (await call("GET", `/storage/v1/b/${B}/o?prefix=t/&delimiter=/`)).json();
    assert.deepEqual([plain.prefixes, plain.items], [["t/dir/"], undefined]);
    const marked = (
      await call("GET", `/storage/v1/b/${B}/o?prefix=t/&delimiter=/&includeTrailingDelimiter=true`)
    ).json();
    assert.deepEqual([marked.prefixes, marked.items.map((i: { name: string }) => i.name)], [["t/dir/"], ["t/dir/"]]);
  });
  test("maxResults is capped at 1000; a bad pageToken or fields mask is a 400", async () => {
    const r = (
      await call("GET", `/storage/v1/b/${B}/o?prefix=p/&maxResults=5000&fields=items(name),nextPageToken`)
    ).json();
    assert.equal(r.items.length, 1000);
    assert.ok(r.nextPageToken);
    assert.equal((await call("GET", `/storage/v1/b/${B}/o?pageToken=garbage!`)).status, 400);
    assert.equal((await call("GET", `/storage/v1/b/${B}/o?fields=items(name`)).status, 400);
    assert.equal((await call("GET", `/storage/v1/b/no-such-bucket/o`)).status, 404);
  });
  test("startOffset / endOffset", async () => {
    const r = (
      await call(
        "GET",
        `/storage/v1/b/${B}/o?prefix=p/&startOffset=p/00010.bin&endOffset=p/00013.bin&fields=items(name)`,
      )
    ).json();
    assert.deepEqual(
      r.items.map((i: { name: string }) => i.name),
      ["p/00010.bin", "p/00011.bin", "p/00012.bin"],
    );
  });
});

describe("objects and media", () => {
  const data = Buffer.from("0123456789abcdefghij".repeat(500));
  const name = "dir/with space/x%y.dcm";
  const enc = encodeURIComponent(name);
  before(() => {
    emu.store.putObject(B, name, data, "application/dicom");
  });
  test("metadata: hashes, absolute mediaLink, encoded names", async () => {
    const m = (await call("GET", `/storage/v1/b/${B}/o/${enc}`)).json();
    assert.equal(m.size, String(data.length));
    assert.equal(m.crc32c, crc32cBase64(data));
    assert.equal(m.md5Hash, md5Base64(data));
    assert.ok(m.mediaLink.startsWith(`${emu.baseUrl}/download/storage/v1/b/${B}/o/${enc}`));
    const viaLink = await request(m.mediaLink);
    assert.deepEqual(Buffer.from(await viaLink.body.arrayBuffer()), data);
  });
  test("media carries the headers clients verify with", async () => {
    const r = await call("GET", `/storage/v1/b/${B}/o/${enc}?alt=media`);
    assert.deepEqual(r.buf, data);
    assert.equal(r.headers["x-goog-hash"], `crc32c=${crc32cBase64(data)},md5=${md5Base64(data)}`);
    assert.equal(r.headers["x-goog-stored-content-encoding"], "identity");
    assert.equal(r.headers["x-goog-stored-content-length"], String(data.length));
    assert.ok(r.headers["x-goog-generation"]);
  });
  test("Range: 206 with Content-Range, 416 past the end", async () => {
    const r = await call("GET", `/download/storage/v1/b/${B}/o/${enc}?alt=media`, undefined, { range: "bytes=10-19" });
    assert.equal(r.status, 206);
    assert.equal(r.headers["content-range"], `bytes 10-19/${data.length}`);
    assert.deepEqual(r.buf, data.subarray(10, 20));
    const bad = await call("GET", `/download/storage/v1/b/${B}/o/${enc}?alt=media`, undefined, {
      range: `bytes=${data.length}-`,
    });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers["content-range"], `bytes */${data.length}`);
  });
  test("generation pinning: an overwritten generation is gone (404)", async () => {
    const first = emu.store.putObject(B, "gen/obj", Buffer.from("v1"), "text/plain");
    emu.store.putObject(B, "gen/obj", Buffer.from("v2"), "text/plain");
    assert.equal(
      (await call("GET", `/download/storage/v1/b/${B}/o/gen%2Fobj?alt=media&generation=${first.generation}`)).status,
      404,
    );
    assert.equal((await call("GET", `/download/storage/v1/b/${B}/o/gen%2Fobj?alt=media`)).buf.toString(), "v2");
  });
  test("a missing object is a 404 JSON error", async () => {
    const r = await call("GET", `/storage/v1/b/${B}/o/missing`);
    assert.equal(r.status, 404);
    assert.equal(r.json().error.errors[0].reason, "notFound");
  });
});

describe("IAM", () => {
  test("read-modify-write with etags; a stale etag is 412 conditionNotMet; conditions survive", async () => {
    const p = (await call("GET", `/storage/v1/b/${B}/iam?optionsRequestedPolicyVersion=3`)).json();
    assert.equal(p.kind, "storage#policy");
    const conditional = {
      role: "roles/storage.objectViewer",
      members: ["user:a@example.com"],
      condition: {
        title: "t",
        description: "d",
        expression: 'resource.name.startsWith("projects/_/buckets/b/objects/x/")',
      },
    };
    const put = await call("PUT", `/storage/v1/b/${B}/iam`, {
      ...p,
      version: 3,
      bindings: [...p.bindings, conditional],
    });
    assert.equal(put.status, 200);
    assert.notEqual(put.json().etag, p.etag);
    const stale = await call("PUT", `/storage/v1/b/${B}/iam`, { ...p, version: 3 });
    assert.equal(stale.status, 412);
    assert.equal(stale.json().error.errors[0].reason, "conditionNotMet");
    const v1 = await call("GET", `/storage/v1/b/${B}/iam`);
    assert.equal(v1.status, 400, "conditional policies need version 3");
    const now = (await call("GET", `/storage/v1/b/${B}/iam?optionsRequestedPolicyVersion=3`)).json();
    assert.deepEqual(now.bindings.at(-1), conditional);
    const perms = (
      await call(
        "GET",
        `/storage/v1/b/${B}/iam/testPermissions?permissions=storage.objects.get&permissions=storage.objects.create`,
      )
    ).json();
    assert.deepEqual(perms.permissions, ["storage.objects.get", "storage.objects.create"]);
  });
});

describe("robustness", () => {
  test("unimplemented requests get a 501 naming method and path", async () => {
    const r = await call("PATCH", "/storage/v1/b/it-bucket/o/x/compose");
    assert.equal(r.status, 501);
    assert.match(r.json().error.message, /does not implement PATCH \/storage\/v1\/b\/it-bucket\/o\/x\/compose/);
    assert.equal((await call("GET", "/totally/unknown")).status, 501);
  });
  test("malformed JSON bodies get 400", async () => {
    const r = await call("POST", "/storage/v1/b?project=p", "{not json");
    assert.equal(r.status, 400);
    assert.equal(r.json().error.errors[0].reason, "parseError");
  });
});

describe("faults", () => {
  const data = Buffer.alloc(64 * 1024, 9);
  before(() => {
    emu.store.putObject(B, "fault/obj", data, "application/octet-stream");
  });
  after(() => {
    emu.faults = { ...noFaults };
  });
  test("503 and 429 with Retry-After", async () => {
    emu.faults = { ...noFaults, rate503: 1, retryAfterSeconds: 3 };
    const r = await call("GET", `/storage/v1/b/${B}/o/fault%2Fobj`);
    assert.equal(r.status, 503);
    assert.equal(r.headers["retry-after"], "3");
    emu.faults = { ...noFaults, rate429: 1 };
    const r2 = await call("GET", `/storage/v1/b/${B}/o/fault%2Fobj`);
    assert.equal(r2.status, 429);
    assert.equal(r2.headers["retry-after"], undefined);
  });
  test("corruption keeps the true hash header, so the body fails its own hash", async () => {
    emu.faults = { ...noFaults, corruptRate: 1 };
    const r = await call("GET", `/download/storage/v1/b/${B}/o/fault%2Fobj?alt=media`);
    assert.equal(r.buf.length, data.length);
    assert.notDeepEqual(r.buf, data);
    assert.equal(r.headers["x-goog-hash"], `crc32c=${crc32cBase64(data)},md5=${md5Base64(data)}`);
  });
  test("truncation and resets deliver fewer bytes than Content-Length promised", async () => {
    for (const kind of ["truncateRate", "resetRate"] as const) {
      emu.faults = { ...noFaults, [kind]: 1 };
      const res = await request(`${emu.baseUrl}/download/storage/v1/b/${B}/o/fault%2Fobj?alt=media`);
      assert.equal(res.headers["content-length"], String(data.length));
      await assert.rejects(res.body.arrayBuffer(), kind);
    }
  });
  test("the admin endpoint switches faults at run time and validates input", async () => {
    emu.faults = { ...noFaults };
    assert.equal((await call("POST", "/_emulator/faults", { rate503: 1 })).status, 200);
    assert.equal((await call("GET", `/storage/v1/b/${B}`)).status, 503);
    assert.equal((await call("POST", "/_emulator/faults", { rate503: 7 })).status, 400);
    assert.equal((await call("POST", "/_emulator/reset-faults")).status, 200);
    assert.equal((await call("GET", `/storage/v1/b/${B}`)).status, 200);
  });
});

describe("a disk-backed store", () => {
  test("survives a restart with objects, generations and policies", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "hcx-emu-data-"));
    try {
      const a = await startEmulator({ dataDir: dir });
      a.store.createBucket({ name: "persist", projectNumber: "1" });
      a.store.putObject("persist", "x/y.bin", Buffer.from("first"), "text/plain");
      const meta = a.store.putObject("persist", "x/y.bin", Buffer.from("second"), "text/plain");
      a.store.setPolicy("persist", {
        version: 1,
        bindings: [{ role: "roles/storage.objectAdmin", members: ["user:u@example.com"] }],
      });
      await a.close();
      const b = await startEmulator({ dataDir: dir });
      const r = await request(`${b.baseUrl}/download/storage/v1/b/persist/o/x%2Fy.bin?alt=media`);
      assert.equal(await r.body.text(), "second");
      assert.equal(r.headers["x-goog-generation"], meta.generation);
      assert.equal(b.store.getPolicy("persist")!.bindings[0]!.members[0], "user:u@example.com");
      const c = b.store.putObject("persist", "z", Buffer.from("z"), "text/plain");
      assert.ok(BigInt(c.generation) > BigInt(meta.generation), "generations keep increasing after a restart");
      await b.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("uploads", () => {
  test("uploadType=media and multipart store the exact bytes and return the resource", async () => {
    const data = Buffer.from([0, 1, 2, 255, 13, 10, 45, 45]);
    const media = await call(
      "POST",
      `/upload/storage/v1/b/${B}/o?uploadType=media&name=${encodeURIComponent("up/media.bin")}`,
      data,
      { "content-type": "application/dicom" },
    );
    assert.equal(media.status, 200);
    assert.equal(media.json().crc32c, crc32cBase64(data));
    assert.equal(media.json().contentType, "application/dicom");
    const boundary = "b0undary";
    const multipart = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify({ name: "up/multi.bin", contentType: "text/x-test", metadata: { k: "v" } })}\r\n--${boundary}\r\ncontent-type: text/x-test\r\n\r\n`,
      ),
      data,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const mp = await call("POST", `/upload/storage/v1/b/${B}/o?uploadType=multipart`, multipart, {
      "content-type": `multipart/related; boundary=${boundary}`,
    });
    assert.equal(mp.status, 200);
    assert.deepEqual(mp.json().metadata, { k: "v" });
    assert.deepEqual(emu.store.readObject(B, "up/multi.bin"), data);
    assert.deepEqual(emu.store.readObject(B, "up/media.bin"), data);
  });
  test("resumable: session URI, 308 with Range per chunk, status query, final 200", async () => {
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff;
    const start = await call("POST", `/upload/storage/v1/b/${B}/o?uploadType=resumable`, {
      name: "up/resumable.bin",
      contentType: "application/dicom",
    });
    assert.equal(start.status, 200);
    const session = String(start.headers["location"]);
    assert.ok(session.startsWith(`${emu.baseUrl}/upload/storage/v1/b/${B}/o?`), session);
    const put = (body: Buffer, range: string) =>
      request(session, { method: "PUT", body, headers: { "content-range": range } });
    const first = await put(data.subarray(0, 262_144), `bytes 0-262143/*`);
    await first.body.dump();
    assert.equal(first.statusCode, 308);
    assert.equal(first.headers["range"], "bytes=0-262143");
    const query = await put(Buffer.alloc(0), `bytes */${data.length}`);
    await query.body.dump();
    assert.equal(query.statusCode, 308);
    assert.equal(query.headers["range"], "bytes=0-262143");
    const last = await put(data.subarray(262_144), `bytes 262144-${data.length - 1}/${data.length}`);
    assert.equal(last.statusCode, 200);
    const meta = (await last.body.json()) as { name: string; size: string; md5Hash: string };
    assert.deepEqual([meta.name, meta.size, meta.md5Hash], ["up/resumable.bin", String(data.length), md5Base64(data)]);
    assert.deepEqual(emu.store.readObject(B, "up/resumable.bin"), data);
    // A client that lost the final response asks again: it gets the object, not a 404.
    const again = await put(Buffer.alloc(0), `bytes */${data.length}`);
    assert.equal(again.statusCode, 200);
    assert.equal(((await again.body.json()) as { md5Hash: string }).md5Hash, md5Base64(data));
  });
  test("ifGenerationMatch preconditions: 0 means 'must not exist'; a stale generation is 412", async () => {
    const path0 = `/upload/storage/v1/b/${B}/o?uploadType=media&name=up%2Fonce&ifGenerationMatch=0`;
    assert.equal((await call("POST", path0, "one")).status, 200);
    const again = await call("POST", path0, "two");
    assert.equal(again.status, 412);
    assert.equal(again.json().error.errors[0].reason, "conditionNotMet");
    const gen = emu.store.getObject(B, "up/once")!.generation;
    assert.equal(
      (
        await call(
          "POST",
          `/upload/storage/v1/b/${B}/o?uploadType=media&name=up%2Fonce&ifGenerationMatch=${gen}`,
          "three",
        )
      ).status,
      200,
    );
    assert.equal(emu.store.readObject(B, "up/once")!.toString(), "three");
  });
});

describe("object lifecycle", () => {
  test("HEAD media sends the headers only; DELETE removes; copy and rewrite duplicate bytes", async () => {
    emu.store.putObject(B, "life/a", Buffer.from("alpha"), "text/plain");
    const head = await request(`${emu.baseUrl}/storage/v1/b/${B}/o/life%2Fa?alt=media`, { method: "HEAD" });
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers["content-length"], "5");
    assert.equal(head.headers["accept-ranges"], "bytes");
    assert.equal((await head.body.arrayBuffer()).byteLength, 0);
    const copied = await call("POST", `/storage/v1/b/${B}/o/life%2Fa/copyTo/b/${B}/o/life%2Fb`, {});
    assert.equal(copied.status, 200);
    assert.equal(copied.json().name, "life/b");
    const rewritten = (await call("POST", `/storage/v1/b/${B}/o/life%2Fa/rewriteTo/b/${B}/o/life%2Fc`, {})).json();
    assert.deepEqual(
      [rewritten.kind, rewritten.done, rewritten.resource.name],
      ["storage#rewriteResponse", true, "life/c"],
    );
    assert.equal(emu.store.readObject(B, "life/c")!.toString(), "alpha");
    assert.equal((await call("DELETE", `/storage/v1/b/${B}/o/life%2Fa`)).status, 204);
    assert.equal((await call("GET", `/storage/v1/b/${B}/o/life%2Fa`)).status, 404);
    assert.equal((await call("DELETE", `/storage/v1/b/${B}/o/life%2Fa`)).status, 404);
  });
  test("metadata honours fields; buckets list by project and delete only when empty", async () => {
    emu.store.putObject(B, "life/m", Buffer.from("m"), "text/plain");
    assert.deepEqual((await call("GET", `/storage/v1/b/${B}/o/life%2Fm?fields=name,size`)).json(), {
      name: "life/m",
      size: "1",
    });
    assert.equal((await call("POST", "/storage/v1/b?project=lister", { name: "lister-one" })).status, 200);
    assert.equal((await call("POST", "/storage/v1/b?project=lister", { name: "lister-two" })).status, 200);
    const listed = (await call("GET", "/storage/v1/b?project=lister")).json();
    assert.deepEqual(
      listed.items.map((b: { name: string }) => b.name),
      ["lister-one", "lister-two"],
    );
    assert.equal((await call("DELETE", "/storage/v1/b/lister-two")).status, 204);
    assert.equal((await call("DELETE", `/storage/v1/b/${B}`)).status, 409);
  });
});

describe("robustness: never hang, never crash", () => {
  test("malformed request targets and percent-encodings get 400/501 JSON, and the server keeps serving", async () => {
    for (const target of ["//[", "http://[zz", `/storage/v1/b/${B}/o/%ZZ`, "/download/storage/v1/b/x%/o/y"]) {
      const out = (await rawExchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).toString(
        "latin1",
      );
      assert.match(out, /^HTTP\/1\.1 (400|501) /, target);
      assert.match(out, /"errors":\[\{"domain":"global","reason":"(invalid|notImplemented)"/, target);
    }
    assert.equal((await call("GET", `/storage/v1/b/${B}`)).status, 200);
  });
  test("a handler that throws is a 500 JSON error", async () => {
    const boom = await startEmulator({
      services: () => [
        { handle: async (_req, _res, url) => (url.pathname === "/boom" ? Promise.reject(new Error("kaboom")) : false) },
      ],
    });
    try {
      const r = await request(`${boom.baseUrl}/boom`);
      assert.equal(r.statusCode, 500);
      const body = (await r.body.json()) as { error: { errors: Array<{ reason: string }>; message: string } };
      assert.equal(body.error.errors[0]!.reason, "internalError");
      assert.match(body.error.message, /kaboom/);
    } finally {
      await boom.close();
    }
  });
  test("the request log counts per method and route kind", async () => {
    emu.requests.clear();
    await call("GET", `/storage/v1/b/${B}/o?prefix=d/`);
    await call("GET", `/download/storage/v1/b/${B}/o/d%2Fc?alt=media`);
    await call("GET", `/storage/v1/b/${B}/o/d%2Fc?alt=media`);
    await call("GET", `/storage/v1/b/${B}/o/d%2Fc`);
    const summary = (await call("GET", "/_emulator/requests")).json();
    assert.equal(summary.mediaGets, 2);
    assert.equal(summary.byRoute["GET object.list"], 1);
    assert.equal(summary.byRoute["GET object.meta"], 1);
    assert.equal(emu.requests.mediaGets(), 2);
    assert.equal((await call("GET", "/_emulator/health")).json().status, "ok");
  });
});

describe("faults, observed on the wire", () => {
  const data = Buffer.alloc(100_000, 5);
  before(() => {
    emu.store.putObject(B, "wire/obj", data, "application/octet-stream");
  });
  after(() => {
    emu.faults = { ...noFaults };
  });
  test("a truncated body really carries fewer bytes than its Content-Length", async () => {
    emu.faults = { ...noFaults, truncateRate: 1 };
    const out = await rawExchange(`GET /download/storage/v1/b/${B}/o/wire%2Fobj?alt=media HTTP/1.1\r\nHost: x\r\n\r\n`);
    const split = out.indexOf("\r\n\r\n");
    const head = out.subarray(0, split).toString("latin1");
    assert.match(head, new RegExp(`content-length: ${data.length}`, "i"));
    const got = out.length - split - 4;
    assert.ok(got > 0 && got < data.length, `received ${got} of ${data.length}`);
  });
  test("a corrupted body fails its own x-goog-hash", async () => {
    emu.faults = { ...noFaults, corruptRate: 1 };
    const r = await call("GET", `/storage/v1/b/${B}/o/wire%2Fobj?alt=media`);
    const hash = String(r.headers["x-goog-hash"]);
    assert.equal(hash, `crc32c=${crc32cBase64(data)},md5=${md5Base64(data)}`);
    assert.equal(r.buf.length, data.length);
    assert.notEqual(`crc32c=${crc32cBase64(r.buf)},md5=${md5Base64(r.buf)}`, hash);
  });
  test("latency delays every request; pathFilter confines faults", async () => {
    emu.faults = { ...noFaults, latencyMs: 120 };
    const t = performance.now();
    await call("GET", `/storage/v1/b/${B}`);
    assert.ok(performance.now() - t >= 110);
    emu.faults = { ...noFaults, rate503: 1, pathFilter: "/download/" };
    assert.equal((await call("GET", `/storage/v1/b/${B}/o/wire%2Fobj`)).status, 200);
    assert.equal((await call("GET", `/download/storage/v1/b/${B}/o/wire%2Fobj?alt=media`)).status, 503);
    const uploadFault = await call("POST", `/upload/storage/v1/b/${B}/o?uploadType=media&name=x`, "x");
    assert.equal(uploadFault.status, 200, "uploads are outside the filter");
  });
});
