/**
 * The two pieces of undici the hot path uses — the keep-alive `Agent` and the promise `request`
 * API — loaded from their own files. `import "undici"` evaluates the whole package (fetch,
 * WebSocket, cookies, caches, mocks, ~110 modules): about half of a `mirror` run's start-up on the
 * bench machine. The request goes through the same `api-request.js` undici's `request()` calls.
 */
import { createRequire, Module } from "node:module";
import type { Agent as UndiciAgent, Dispatcher } from "undici";

const load = createRequire(import.meta.url);

/**
 * undici's client loads its HTTP/2 half at start, and with it `node:http2` (and TLS, and crypto):
 * ~14 ms of every command's start-up, for connections hcexport never makes (it never sets
 * `allowH2`). A stand-in in the require cache takes its place and loads the real module at the
 * first HTTP/2 connection, so nothing changes for one.
 */
function deferHttp2(): void {
  const id = load.resolve("undici/lib/dispatcher/client-h2.js");
  if (load.cache[id] !== undefined) return;
  const standIn = new Module(id);
  standIn.filename = id;
  standIn.loaded = true;
  standIn.exports = function connectH2(this: unknown, ...args: unknown[]): unknown {
    if (load.cache[id] === standIn) delete load.cache[id];
    return (load(id) as (...a: unknown[]) => unknown).apply(this, args);
  };
  load.cache[id] = standIn;
}
deferHttp2();

/** undici's `Agent` (a pool per origin). */
export const Agent = load("undici/lib/dispatcher/agent.js") as typeof UndiciAgent;

const apiRequest = load("undici/lib/api/api-request.js") as (
  this: Dispatcher,
  options: Dispatcher.RequestOptions,
) => Promise<Dispatcher.ResponseData>;

export interface LiteRequestOptions {
  readonly dispatcher: Dispatcher;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string>;
  readonly body?: string | Buffer;
  readonly signal?: AbortSignal;
}

/** `undici.request(url, options)` on an explicit dispatcher (what `request()` does after its argument checks). */
export function request(url: URL, options: LiteRequestOptions): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(options.dispatcher, {
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: options.method,
    headers: options.headers,
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}
