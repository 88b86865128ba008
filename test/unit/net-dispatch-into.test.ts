import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { HttpError, IntegrityError } from "../../src/core/errors.ts";
import { HttpClient } from "../../src/net/http-client.ts";
import { dispatchInto, ERROR_BODY_BYTES, NotWhole } from "../../src/net/receive-into.ts";
import { Agent } from "../../src/net/undici-lite.ts";

// HttpClient.receive / dispatchInto (the mirror's small objects) against a real HTTP server that
// misbehaves on purpose: the checks `receiveInto` makes on a body stream, made on undici's
// dispatch callbacks, with what the server saw (requests, connections, closes) asserted too.
const SIZE = 150_000;
const body = Buffer.alloc(SIZE);
for (let i = 0; i < SIZE; i++) body[i] = (i * 13 + 7) & 0xff;
const TOKEN = "ya29.secret-token-value-0123456789";

type Route = (req: IncomingMessage, res: ServerResponse) => void;
const routes: Record<string, Route> = {
  "/ok": (_req, res) => {
    res.writeHead(200, { "content-length": String(SIZE), "x-goog-generation": "7" });
    res.end(body);
  },
  "/long": (_req, res) => {
    res.writeHead(200, { "content-length": String(SIZE + 100) });
    res.end(Buffer.concat([body, Buffer.alloc(100, 1)]));
  },
  "/short": (_req, res) => {
    res.writeHead(200, { "content-length": String(SIZE - 10) });
    res.end(body.subarray(0, SIZE - 10));
  },
  "/503": (_req, res) => {
    res.writeHead(503, { "content-type": "application/json", "retry-after": "7" });
    res.end(
      JSON.stringify({
        error: { code: 503, message: `backend busy for Bearer ${TOKEN}`, errors: [{ reason: "backendError" }] },
      }),
    );
  },
  "/huge-error": (_req, res) => {
    res.writeHead(500, { "content-type": "text/plain" });
    res.end(Buffer.alloc(1024 * 1024, "x"));
  },
  "/stall": (_req, res) => {
    res.writeHead(200, { "content-length": String(SIZE) });
    res.write(body.subarray(0, SIZE / 2)); // and never the rest
  },
  "/reset": (req, res) => {
    res.writeHead(200, { "content-length": String(SIZE) });
    res.write(body.subarray(0, SIZE / 2), () => req.socket.destroy());
  },
};

let base = "";
let requests: Array<{ path: string; authorization: string | undefined }> = [];
let connections = 0;
let closes = 0;
const server = createServer((req, res) => {
  requests.push({ path: req.url!.split("?")[0]!, authorization: req.headers.authorization });
  (routes[req.url!.split("?")[0]!] ?? ((_q, r) => r.writeHead(404).end()))(req, res);
});
server.on("connection", (s: Socket) => {
  connections++;
  s.on("close", () => closes++);
});

before(async () => {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

function client(signal?: AbortSignal): HttpClient {
  return new HttpClient({
    ...(signal === undefined ? {} : { signal }),
    auth: { headers: async () => ({ authorization: `Bearer ${TOKEN}` }), description: "test" },
    dispatcher: new Agent({ connections: 1, keepAliveTimeout: 10_000 }),
    timeoutMs: 5_000,
  });
}

/** `fn` with a fresh client (one connection; `signal`, its own) and fresh server counters; the client closed after. */
async function withClient(fn: (c: HttpClient) => Promise<void>, signal?: AbortSignal): Promise<void> {
  fresh();
  const c = client(signal);
  try {
    await fn(c);
  } finally {
    await c.close();
  }
}

const fresh = () => {
  requests = [];
  connections = 0;
  closes = 0;
};
const settle = () => new Promise((r) => setTimeout(r, 50));

describe("HttpClient.receive", () => {
  it("copies the body into the buffer, returns the answer's head, sends the credentials, and keeps the connection", async () => {
    await withClient(async (c) => {
      const into = new Uint8Array(SIZE);
      const head = await c.receive("GET", `${base}/ok`, into, { name: "a.dcm", query: { alt: "media" } });
      assert.equal(head.status, 200);
      assert.equal(head.headers["x-goog-generation"], "7");
      assert.ok(Buffer.from(into).equals(body));
      await c.receive("GET", `${base}/ok`, new Uint8Array(SIZE), { name: "b.dcm" });
      assert.deepEqual(
        requests.map((r) => [r.path, r.authorization]),
        [
          ["/ok", `Bearer ${TOKEN}`],
          ["/ok", `Bearer ${TOKEN}`],
        ],
      );
      assert.equal(connections, 1, "both requests on one keep-alive connection");
    });
  });

  it("a body longer than the buffer is cut off at the overrun and its connection destroyed, never reused", async () => {
    await withClient(async (c) => {
      const into = new Uint8Array(SIZE);
      await assert.rejects(
        c.receive("GET", `${base}/long`, into, { name: "long.dcm" }),
        (e: unknown) =>
          e instanceof IntegrityError && /long\.dcm: the body is longer than the listed 150000 bytes/.test(e.message),
      );
      await settle();
      assert.equal(closes, 1, "the connection that overran was closed");
      await c.receive("GET", `${base}/ok`, into, { name: "ok.dcm" });
      assert.equal(connections, 2, "the next request opened a new connection");
    });
  });

  it("a shorter body is a truncation, named with both sizes; sizeFrom names where the size came from", async () => {
    await withClient(async (c) => {
      await assert.rejects(
        c.receive("GET", `${base}/short`, new Uint8Array(SIZE), { name: "s.dcm" }),
        (e: unknown) => e instanceof IntegrityError && e.message === "s.dcm: got 149990 bytes, expected 150000",
      );
      await assert.rejects(
        c.receive("GET", `${base}/long`, new Uint8Array(SIZE), { name: "l.dcm", sizeFrom: "Content-Length's" }),
        /the body is longer than the Content-Length's 150000 bytes/,
      );
    });
  });

  it("a non-2xx answer is the HttpError `stream` gives: Google's message and reason, Retry-After, the token scrubbed", async () => {
    await withClient(async (c) => {
      const err = await c.receive("GET", `${base}/503`, new Uint8Array(SIZE), { name: "x.dcm" }).then(
        () => assert.fail("resolved"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof HttpError, String(err));
      assert.equal(err.status, 503);
      assert.equal(err.reason, "backendError");
      assert.equal(err.retryAfterMs, 7000);
      assert.match(err.message, /backend busy for REDACTED$/);
      assert.ok(!err.message.includes(TOKEN), "no credential in the message");
      const viaStream = await c.stream("GET", `${base}/503`).then(
        () => assert.fail("resolved"),
        (e: unknown) => e as HttpError,
      );
      assert.deepEqual(
        [err.status, err.reason, err.retryAfterMs, err.message],
        [viaStream.status, viaStream.reason, viaStream.retryAfterMs, viaStream.message],
      );
    });
  });

  it("an abort mid-body rejects with the signal's reason at once and closes the connection", async () => {
    await withClient(async (c) => {
      const ac = new AbortController();
      const started = performance.now();
      setTimeout(() => ac.abort(new Error("stop now")), 100);
      await assert.rejects(
        c.receive("GET", `${base}/stall`, new Uint8Array(SIZE), { name: "st.dcm", signal: ac.signal }),
        /stop now/,
      );
      const ms = performance.now() - started;
      assert.ok(ms < 1000, `rejected after ${ms.toFixed(0)} ms`);
      await settle();
      assert.equal(closes, 1, "the stalled connection was closed");
    });
  });

  it("the client's own signal (the CLI's Ctrl-C) aborts a body in flight too, and closes the connection", async () => {
    const run = new AbortController();
    await withClient(async (c) => {
      const started = performance.now();
      setTimeout(() => run.abort(new Error("interrupted")), 100);
      await assert.rejects(
        c.receive("GET", `${base}/stall`, new Uint8Array(SIZE), {
          name: "st.dcm",
          signal: new AbortController().signal,
        }),
        /interrupted/,
      );
      const ms = performance.now() - started;
      assert.ok(ms < 1000, `rejected after ${ms.toFixed(0)} ms`);
      await settle();
      assert.equal(closes, 1, "the stalled connection was closed");
    }, run.signal);
  });

  it("no listener is left on the client's signal or the request's once a request settles, however it ended", async () => {
    fresh();
    const run = new AbortController();
    const c = new HttpClient({
      signal: run.signal,
      auth: { headers: async () => ({}), description: "test" },
      dispatcher: new Agent({ connections: 8 }),
      timeoutMs: 5_000,
    });
    try {
      const own = new AbortController();
      const paths = ["/ok", "/long", "/short", "/503", "/reset"];
      // 40 at once, every way a request can end: each listens to both signals while in flight.
      const inFlight = Array.from({ length: 40 }, (_, i) =>
        c.receive("GET", `${base}${paths[i % paths.length]}`, new Uint8Array(SIZE), {
          name: `n${i}`,
          signal: own.signal,
        }),
      );
      await new Promise((r) => setImmediate(r));
      assert.ok(getEventListeners(run.signal, "abort").length > 0, "in flight, the run's signal is listened to");
      const results = await Promise.allSettled(inFlight);
      assert.deepEqual(
        paths.map((_, k) => results.filter((r, i) => i % paths.length === k && r.status === "fulfilled").length),
        [8, 0, 0, 0, 0],
      );
      assert.equal(getEventListeners(run.signal, "abort").length, 0, "the run's signal");
      assert.equal(getEventListeners(own.signal, "abort").length, 0, "the request's signal");
    } finally {
      await c.close();
    }
  });

  it("an already aborted signal sends no request at all", async () => {
    await withClient(async (c) => {
      const ac = new AbortController();
      ac.abort(new Error("gone"));
      await assert.rejects(
        c.receive("GET", `${base}/ok`, new Uint8Array(SIZE), { name: "o", signal: ac.signal }),
        /gone/,
      );
      await settle();
      assert.equal(requests.length, 0);
    });
  });

  it("a connection reset mid-body rejects (a transport error, retryable by the caller)", async () => {
    await withClient(async (c) => {
      await assert.rejects(
        c.receive("GET", `${base}/reset`, new Uint8Array(SIZE), { name: "r.dcm" }),
        (e: unknown) => e instanceof Error && !(e instanceof HttpError) && /closed|reset|socket/i.test(e.message),
      );
    });
  });
});

describe("dispatchInto", () => {
  it("a chooser picks the buffer from the answer's headers; choosing none aborts before the body (NotWhole)", async () => {
    fresh();
    const agent = new Agent({ connections: 1 });
    const req = { url: new URL(`${base}/ok`), method: "GET" as const, headers: {} };
    const failure = () => new Error("unexpected");
    try {
      let buf: Uint8Array | undefined;
      const head = await dispatchInto(
        agent,
        req,
        (status, h) => {
          assert.equal(status, 200);
          return (buf = new Uint8Array(Number(h["content-length"])));
        },
        { name: "c", failure },
      );
      assert.equal(head.status, 200);
      assert.ok(Buffer.from(buf!).equals(body));
      await assert.rejects(
        dispatchInto(agent, req, () => undefined, { name: "c", failure }),
        (e: unknown) => e instanceof NotWhole,
      );
      await settle();
      assert.equal(closes, 1, "the refused answer's connection was closed, its body unread");
    } finally {
      await agent.close();
    }
  });

  it("keeps at most ERROR_BODY_BYTES of a failed answer's body for its message, and reads the rest", async () => {
    fresh();
    const agent = new Agent({ connections: 1 });
    try {
      let seen: { status: number; length: number } | undefined;
      await assert.rejects(
        dispatchInto(agent, { url: new URL(`${base}/huge-error`), method: "GET", headers: {} }, new Uint8Array(10), {
          name: "h",
          failure: (status, _h, text) => {
            seen = { status, length: text.length };
            return new Error("failed as expected");
          },
        }),
        /failed as expected/,
      );
      assert.deepEqual(seen, { status: 500, length: ERROR_BODY_BYTES });
      // The whole error body was read, so the connection is reused.
      await dispatchInto(agent, { url: new URL(`${base}/ok`), method: "GET", headers: {} }, new Uint8Array(SIZE), {
        name: "ok",
        failure: () => new Error("unexpected"),
      });
      assert.equal(connections, 1);
    } finally {
      await agent.close();
    }
  });
});
