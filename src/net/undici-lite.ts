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
  this: Pick<Dispatcher, "dispatch">,
  options: Dispatcher.RequestOptions,
) => Promise<Dispatcher.ResponseData>;

export interface LiteRequestOptions {
  readonly dispatcher: Dispatcher;
  readonly method: Dispatcher.HttpMethod;
  readonly headers: Record<string, string>;
  readonly body?: string | Buffer;
  readonly signal?: AbortSignal;
}

/** undici's parsed header object (its own `IncomingHttpHeaders`). */
type Headers = Parameters<NonNullable<Dispatcher.DispatchHandler["onResponseEnd"]>>[1];

/**
 * Forwards every callback to undici's own request handler, then drops the raw header lines the
 * response started with. undici keeps them on the request's controller (`rawHeaders`) for as long
 * as the response body lives (the body's `read` calls `controller.resume()`), and they are views of
 * the socket read the head arrived in: an ArrayBuffer of up to 64 KiB with the body's first bytes.
 * A response alive at two scavenges took that buffer into the old generation, where only a full
 * collection frees it. In a plain undici `request()` loop (10,000 × 150 KB, 16 at a time),
 * `process.memoryUsage().arrayBuffers` after each scavenge climbed 3–4 MiB at a time to 30–50 MiB,
 * falling only at full collections; with `rawHeaders` dropped it stays at 3–4 MiB. `dicomweb pull`
 * of the same: 38–43 full collections instead of 91–99, user CPU 5.1–6.4 s instead of 6.8–7.7;
 * `mirror`'s peak RSS 167–170 instead of 218–220 MiB (150 KB objects), 126–129 instead of 140 MiB
 * (20,000 × 16 KB). hcexport reads only the parsed headers (never `responseHeaders: "raw"`), and
 * undici has parsed them before this runs.
 */
export class RawHeadersReleased implements Dispatcher.DispatchHandler {
  readonly #inner: Dispatcher.DispatchHandler;
  constructor(inner: Dispatcher.DispatchHandler) {
    this.#inner = inner;
  }
  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.#inner.onRequestStart?.(controller, context);
  }
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    this.#inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
    controller.rawHeaders = null;
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#inner.onResponseData?.(controller, chunk);
  }
  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Headers): void {
    this.#inner.onResponseEnd?.(controller, trailers);
  }
  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.#inner.onResponseError?.(controller, error);
  }
}

/** What `api-request.js` calls `dispatch` on: the dispatcher, each handler wrapped (one per dispatcher). */
const releasing = new WeakMap<Dispatcher, Pick<Dispatcher, "dispatch">>();
function releasingDispatcher(dispatcher: Dispatcher): Pick<Dispatcher, "dispatch"> {
  let shim = releasing.get(dispatcher);
  if (shim === undefined) {
    shim = { dispatch: (opts, handler) => dispatcher.dispatch(opts, new RawHeadersReleased(handler)) };
    releasing.set(dispatcher, shim);
  }
  return shim;
}

/** `undici.request(url, options)` on an explicit dispatcher (what `request()` does after its argument checks). */
export function request(url: URL, options: LiteRequestOptions): Promise<Dispatcher.ResponseData> {
  return apiRequest.call(releasingDispatcher(options.dispatcher), {
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: options.method,
    headers: options.headers,
    ...(options.body === undefined ? {} : { body: options.body }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
}
