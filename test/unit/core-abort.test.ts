import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { getEventListeners } from "node:events";
import { abortable, abortWith, eitherSignal } from "../../src/core/abort.ts";
import { InterruptedError, interruptionOf } from "../../src/core/errors.ts";
import { HttpClient } from "../../src/net/http-client.ts";

test("abortable rejects with the signal's reason at once; the abandoned work cannot reject unhandled", async () => {
  const c = new AbortController();
  let settle: (v: string) => void = () => {};
  const work = new Promise<string>((r) => (settle = r));
  const raced = abortable(work, c.signal);
  const reason = new InterruptedError("SIGINT");
  c.abort(reason);
  await assert.rejects(raced, (e) => e === reason);
  settle("late");
  assert.equal(await abortable(Promise.resolve(1), new AbortController().signal), 1);
  await assert.rejects(abortable(Promise.reject(new Error("x")), c.signal), (e) => e === reason);
  assert.equal(interruptionOf(c.signal), reason);
  assert.equal(interruptionOf(new AbortController().signal), undefined);
});

test("eitherSignal aborts when either does", () => {
  const a = new AbortController();
  const b = new AbortController();
  assert.equal(eitherSignal(a.signal, undefined), a.signal);
  assert.equal(eitherSignal(undefined, undefined), undefined);
  const both = eitherSignal(a.signal, b.signal)!;
  b.abort(new Error("b"));
  assert.equal(both.aborted, true);
});

test("abortWith: the target aborts with the source's reason (at once if it already has); unlink leaves no listener", () => {
  const source = new AbortController();
  const target = new AbortController();
  const unlink = abortWith(source.signal, target);
  assert.equal(getEventListeners(source.signal, "abort").length, 1);
  const reason = new Error("stop");
  source.abort(reason);
  assert.equal(target.signal.reason, reason);

  const quiet = new AbortController();
  const other = new AbortController();
  abortWith(quiet.signal, other)();
  assert.equal(getEventListeners(quiet.signal, "abort").length, 0, "unlinked");
  quiet.abort(new Error("late"));
  assert.equal(other.signal.aborted, false, "an unlinked target is not aborted");

  const early = new AbortController();
  early.abort(new Error("already"));
  const late = new AbortController();
  abortWith(early.signal, late);
  assert.equal((late.signal.reason as Error).message, "already");
  unlink();
  abortWith(undefined, new AbortController())();
});

test("a client's signal ends a retry backoff at once (a 503 loop with Retry-After: 30)", async () => {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(503, { "retry-after": "30", "content-type": "application/json" });
    res.end('{"error":{"code":503,"message":"busy"}}');
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const c = new AbortController();
  const client = new HttpClient({ signal: c.signal });
  try {
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/x`;
    const started = performance.now();
    const call = client.json("GET", url);
    setTimeout(() => c.abort(new InterruptedError("SIGTERM")), 200);
    await assert.rejects(call);
    const ms = performance.now() - started;
    assert.ok(ms < 1500, `the retry wait lasted ${Math.round(ms)} ms after the abort`);
    assert.equal(hits, 1, "no request after the abort");
    // Once aborted, nothing is sent at all.
    await assert.rejects(client.json("GET", url));
    assert.equal(hits, 1);
  } finally {
    await client.close();
    server.close();
  }
});
