import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import type { Dispatcher } from "undici";
import { Agent, RawHeadersReleased, request } from "../../src/net/undici-lite.ts";
import { collect } from "../support/collect.ts";

describe("undici-lite request", () => {
  it("keeps no socket read alive through a response it has finished reading", async () => {
    const body = Buffer.alloc(150_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/dicom", "content-length": String(body.length) });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const dispatcher = new Agent({ connections: 1 });
    try {
      const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`);
      const reads: Array<WeakRef<ArrayBuffer>> = [];
      const got: Buffer[] = [];
      let headShared = false;
      const res = await request(url, { dispatcher, method: "GET", headers: {} });
      await new Promise<void>((resolve, reject) => {
        res.body.on("data", (chunk: Buffer) => {
          // The first read holds the status line and the headers in front of the body's first bytes.
          if (reads.length === 0) headShared = chunk.byteOffset > 0;
          reads.push(new WeakRef(chunk.buffer as ArrayBuffer));
          got.push(Buffer.from(chunk));
        });
        res.body.once("end", resolve);
        res.body.once("error", reject);
      });
      assert.ok(Buffer.concat(got).equals(body), "the body arrives whole");
      assert.ok(headShared, "precondition: the head and the body's first bytes came in one socket read");
      await collect();
      // `res` (its body stream, and through it undici's controller) is still referenced here.
      assert.equal(res.statusCode, 200);
      const alive = reads.filter((r) => r.deref() !== undefined).length;
      assert.equal(alive, 0, `${alive} of ${reads.length} socket reads are still reachable from the response`);
    } finally {
      await dispatcher.close();
      server.close();
    }
  });
});

describe("RawHeadersReleased", () => {
  it("forwards every callback with its arguments, then drops the controller's raw header lines", () => {
    const calls: unknown[][] = [];
    const inner: Dispatcher.DispatchHandler = {
      onRequestStart: (...a) => void calls.push(["requestStart", ...a]),
      onResponseStart: (c, ...a) => void calls.push(["responseStart", c.rawHeaders, ...a]),
      onResponseData: (...a) => void calls.push(["data", ...a]),
      onResponseEnd: (...a) => void calls.push(["end", ...a]),
      onResponseError: (...a) => void calls.push(["error", ...a]),
    };
    const raw = [Buffer.from("content-length"), Buffer.from("3")];
    const controller = { rawHeaders: raw } as unknown as Dispatcher.DispatchController;
    const h = new RawHeadersReleased(inner);
    const chunk = Buffer.from("abc");
    const err = new Error("reset");
    h.onRequestStart(controller, { ctx: 1 });
    h.onResponseStart(controller, 200, { "content-length": "3" }, "OK");
    h.onResponseData(controller, chunk);
    h.onResponseEnd(controller, {});
    h.onResponseError(controller, err);
    assert.deepEqual(calls, [
      ["requestStart", controller, { ctx: 1 }],
      ["responseStart", raw, 200, { "content-length": "3" }, "OK"],
      ["data", controller, chunk],
      ["end", controller, {}],
      ["error", controller, err],
    ]);
    assert.equal(controller.rawHeaders, null, "the raw lines are gone once the handler has seen them");
  });
});
