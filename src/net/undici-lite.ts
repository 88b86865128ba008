/**
 * The two pieces of undici the hot path uses — the keep-alive `Agent` and the promise `request`
 * API — loaded from their own files. `import "undici"` evaluates the whole package (fetch,
 * WebSocket, cookies, caches, mocks, ~110 modules): about half of a `mirror` run's start-up on the
 * bench machine. The request goes through the same `api-request.js` undici's `request()` calls.
 */
import { createRequire } from "node:module";
import type { Agent as UndiciAgent, Dispatcher } from "undici";

const load = createRequire(import.meta.url);

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
