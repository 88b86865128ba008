import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { seededRandom } from "../../src/emulator/faults.ts";
import { compareUtf8 } from "../../src/core/utf8-order.ts";
import { parseRange } from "../../src/emulator/media.ts";
import { EmulatorObjectStore } from "../../src/emulator/gcs/object-store.ts";
import { RequestLog, routeKind } from "../../src/emulator/request-log.ts";

describe("compareUtf8", () => {
  test("agrees with a byte-wise comparison of the UTF-8 encodings", () => {
    const alphabet = ["a", "b", "/", "-", ".", "~", "é", "\u{E000}", "\u{FFFD}", "\u{1F600}", "\u{10000}", "0"];
    const r = seededRandom(3);
    const pick = () =>
      Array.from({ length: 1 + Math.floor(r() * 5) }, () => alphabet[Math.floor(r() * alphabet.length)]).join("");
    for (let i = 0; i < 5000; i++) {
      const a = pick();
      const b = pick();
      assert.equal(
        Math.sign(compareUtf8(a, b)),
        Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b))),
        `${a} vs ${b}`,
      );
    }
  });
});

describe("Range", () => {
  test("forms and edge cases", () => {
    assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
    assert.deepEqual(parseRange("bytes=50-500", 100), { start: 50, end: 99 });
    assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
    assert.equal(parseRange("bytes=9-3", 100), undefined);
    assert.equal(parseRange("items=1-2", 100), undefined);
  });
});

describe("object store index", () => {
  test("listing stays in UTF-8 byte order through interleaved puts, deletes and overwrites", () => {
    const store = new EmulatorObjectStore();
    store.createBucket({ name: "b", projectNumber: "1" });
    const r = seededRandom(9);
    const alphabet = ["a", "b", "/", "~", "é", "\u{E000}", "\u{1F600}", "0"];
    const live = new Set<string>();
    const list = () => store.listObjects("b", { limit: 1_000_000 }).map((m) => m.name);
    const expected = () => [...live].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < 40; i++) {
        const name = Array.from(
          { length: 1 + Math.floor(r() * 4) },
          () => alphabet[Math.floor(r() * (round < 15 ? 4 : alphabet.length))],
        ).join("");
        if (r() < 0.25 && live.has(name)) {
          assert.equal(store.deleteObject("b", name), true);
          live.delete(name);
        } else {
          store.putObject("b", name, Buffer.from(name), "text/plain");
          live.add(name);
        }
      }
      assert.deepEqual(list(), expected(), `round ${round}`);
    }
    // startAfter and prefix with keys the bucket does not hold
    const all = expected();
    const after = store.listObjects("b", { startAfter: "a", limit: 5 }).map((m) => m.name);
    assert.deepEqual(after, all.filter((n) => Buffer.compare(Buffer.from(n), Buffer.from("a")) > 0).slice(0, 5));
    assert.deepEqual(
      store.listObjects("b", { prefix: "b", limit: 1000 }).map((m) => m.name),
      all.filter((n) => n.startsWith("b")),
    );
  });
});

describe("request log", () => {
  test("route kinds", () => {
    assert.equal(routeKind("/download/storage/v1/b/b/o/x", "alt=media"), "object.media");
    assert.equal(routeKind("/storage/v1/b/b/o/x%2Fy", "generation=1&alt=media"), "object.media");
    assert.equal(routeKind("/storage/v1/b/b/o/x%2Fy", ""), "object.meta");
    assert.equal(routeKind("/storage/v1/b/b/o", "prefix=a"), "object.list");
    assert.equal(routeKind("/storage/v1/b/b/iam", ""), "iam");
    assert.equal(routeKind("/storage/v1/b", "project=p"), "bucket.collection");
    assert.equal(routeKind("/storage/v1/b/b", ""), "bucket");
    assert.equal(routeKind("/upload/storage/v1/b/b/o", "uploadType=media"), "upload");
    assert.equal(routeKind("/_emulator/faults", ""), "admin");
    assert.equal(routeKind("/v1/projects/p/locations/l/datasets/d", ""), "healthcare");
  });
  test("counters are exact while retained entries stay bounded", () => {
    const log = new RequestLog();
    for (let i = 0; i < RequestLog.MAX + 10; i++)
      log.finished(log.add("GET", "/download/storage/v1/b/b/o/x", "alt=media"), 200);
    log.finished(log.add("GET", "/storage/v1/b/b/o", ""), 503);
    assert.equal(log.mediaGets(), RequestLog.MAX + 10);
    assert.equal(log.count("GET object.list"), 1);
    assert.equal(log.countStatus(503), 1);
    assert.ok(log.entries.length <= RequestLog.MAX);
    assert.equal(log.summary().byRoute["GET object.media"], RequestLog.MAX + 10);
    log.clear();
    assert.equal(log.count(), 0);
  });
  test("peak in flight: requests received whose response has not closed, per method and route", () => {
    const log = new RequestLog();
    const media = () => log.add("GET", "/download/storage/v1/b/b/o/x", "alt=media");
    const a = media();
    const b = media();
    log.closed(a);
    const c = media();
    const list = log.add("GET", "/storage/v1/b/b/o", "");
    assert.equal(log.peakInFlight("GET object.media"), 2);
    assert.equal(log.peakInFlight("GET object.list"), 1);
    assert.deepEqual(log.summary().peakInFlight, { "GET object.list": 1, "GET object.media": 2 });
    log.clear();
    assert.equal(log.peakInFlight("GET object.media"), 2, "b and c are still open after a clear");
    for (const e of [b, c, list]) log.closed(e);
    log.clear();
    media();
    assert.equal(log.peakInFlight("GET object.media"), 1);
  });
});
