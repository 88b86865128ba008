import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { gcsSource } from "../../src/gcp/gcs-objects.ts";
import { ListingError } from "../../src/mirror/ports.ts";
import type { HttpClient } from "../../src/net/http-client.ts";

/** A listing server in a box: each `json` call is recorded and answered when the test says so. */
function fakeClient() {
  const calls: Array<{
    url: string;
    query: Record<string, unknown>;
    answer: (v: unknown) => void;
    fail: (e: unknown) => void;
  }> = [];
  const client = {
    json: (_method: string, url: string, options: { query: Record<string, unknown> }) =>
      new Promise((resolve, reject) => {
        calls.push({ url, query: options.query, answer: resolve, fail: reject });
      }),
  } as unknown as HttpClient;
  return { client, calls };
}

const item = (name: string) => ({ name, size: "3", generation: "7", crc32c: "AAAAAA==" });
/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

describe("gcsSource listing", () => {
  it("asks for the next page as soon as one arrives, never more than one ahead, with prettyPrint=false", async () => {
    const { client, calls } = fakeClient();
    const it = gcsSource(client, "http://gcs.test/").listPages("b", "p/")[Symbol.asyncIterator]();
    const first = it.next();
    await settle();
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.url, "http://gcs.test/storage/v1/b/b/o");
    assert.equal(calls[0]!.query["prettyPrint"], false);
    assert.equal(calls[0]!.query["prefix"], "p/");
    assert.equal(calls[0]!.query["pageToken"], undefined);
    assert.equal(
      calls[0]!.query["fields"],
      "nextPageToken,items(name,size,generation,crc32c,md5Hash,etag,contentEncoding)",
    );
    calls[0]!.answer({ items: [item("p/a"), item("p/b")], nextPageToken: "T1" });
    const r1 = await first;
    assert.deepEqual(
      (r1.value as Array<{ name: string }>).map((o) => o.name),
      ["p/a", "p/b"],
    );
    // Page 2 is on its way while page 1 is being planned; page 3 is not.
    assert.equal(calls.length, 2);
    assert.equal(calls[1]!.query["pageToken"], "T1");
    await settle();
    assert.equal(calls.length, 2, "only one page ahead");
    calls[1]!.answer({ items: [item("p/c")], nextPageToken: "T2" });
    const r2 = await it.next();
    assert.deepEqual(
      (r2.value as Array<{ name: string }>).map((o) => o.name),
      ["p/c"],
    );
    assert.equal(calls.length, 3);
    calls[2]!.answer({ items: [item("p/d")] });
    const r3 = await it.next();
    assert.deepEqual(
      (r3.value as Array<{ name: string }>).map((o) => o.name),
      ["p/d"],
    );
    assert.equal((await it.next()).done, true);
    assert.equal(calls.length, 3, "no request after the last page");
  });

  it("a failure of the prefetched page surfaces after every item of the page before it", async () => {
    const { client, calls } = fakeClient();
    const it = gcsSource(client, "http://gcs.test").listPages("b", "")[Symbol.asyncIterator]();
    const first = it.next();
    await settle();
    calls[0]!.answer({ items: [item("a")], nextPageToken: "T1" });
    assert.equal((await first).value!.length, 1);
    // The prefetch fails while nobody waits on it: no unhandled rejection, and the error comes next.
    calls[1]!.fail(new Error("connection reset"));
    await settle();
    await assert.rejects(it.next(), /connection reset/);
  });

  it("a repeated nextPageToken is still refused, counting pages as before", async () => {
    const { client, calls } = fakeClient();
    const it = gcsSource(client, "http://gcs.test").listPages("b", "")[Symbol.asyncIterator]();
    const first = it.next();
    await settle();
    calls[0]!.answer({ items: [item("a")], nextPageToken: "A" });
    await first;
    calls[1]!.answer({ items: [item("b")], nextPageToken: "A" });
    await assert.rejects(
      it.next(),
      (e: unknown) => e instanceof ListingError && /same nextPageToken again after 1 page\(s\)/.test(e.message),
    );
    assert.equal(calls.length, 2, "nothing requested with the cycling token");
  });

  it("a consumer that stops early leaves at most the one prefetched request behind", async () => {
    const { client, calls } = fakeClient();
    const it = gcsSource(client, "http://gcs.test").listPages("b", "")[Symbol.asyncIterator]();
    const first = it.next();
    await settle();
    calls[0]!.answer({ items: [item("a")], nextPageToken: "T1" });
    await first;
    await it.return!(undefined);
    calls[1]!.answer({ items: [item("b")], nextPageToken: "T2" });
    await settle();
    assert.equal(calls.length, 2);
  });
});
