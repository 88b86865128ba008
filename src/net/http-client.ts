import type { Dispatcher } from "undici";
import { eitherSignal } from "../core/abort.ts";
import { parseRetryAfter } from "../core/backoff.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { HttpError, UnreachableError, unknownHost } from "../core/errors.ts";
import { redactSecrets } from "../core/redact.ts";
import { withRetry, type RetryNotice, type RetryPolicy, defaultRetryPolicy } from "../core/retry.ts";
import { dispatchInto, type IntoTarget } from "./receive-into.ts";
import { Agent, request } from "./undici-lite.ts";

/** Supplies request headers (e.g. `Authorization`). Implementations: anonymous, basic, bearer, Google ADC. */
export interface AuthHeaders {
  headers(url: URL): Promise<Record<string, string>>;
  /** For `doctor`: what kind of credential this is; never the secret itself. */
  readonly description: string;
}

export const anonymousAuth: AuthHeaders = { headers: async () => ({}), description: "anonymous" };

export interface HttpClientOptions {
  readonly auth?: AuthHeaders;
  /** A shared keep-alive pool; default: one per client sized by `connections`. */
  readonly dispatcher?: Dispatcher;
  readonly connections?: number;
  readonly retry?: RetryPolicy;
  readonly clock?: Clock;
  readonly userAgent?: string;
  /**
   * Idle timeout in ms (default 30 s): for the response headers, and between any two reads of a
   * body (undici headersTimeout/bodyTimeout). A stalled connection is destroyed, never reused.
   */
  readonly timeoutMs?: number;
  readonly onRetry?: (notice: RetryNotice & { method: string; url: string }) => void;
  /**
   * Aborts every request and retry wait of this client (the CLI passes its SIGINT/SIGTERM signal),
   * on top of any per-request signal.
   */
  readonly signal?: AbortSignal;
}

export interface RequestOptions {
  readonly headers?: Record<string, string>;
  readonly query?: Record<string, string | number | boolean | readonly string[] | undefined>;
  /** JSON-serialised unless already a string/Buffer. */
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  /** Retry transient failures (default true). Set false for non-idempotent calls you retry yourself. */
  readonly retry?: boolean;
  /** Status codes that are returned instead of thrown (e.g. 404 for an existence probe). */
  readonly accept?: readonly number[];
}

export interface StreamResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Dispatcher.ResponseData["body"];
}

/** The default idle timeout (`--timeout`): a read that waits longer than this fails and is retried. */
export const DEFAULT_TIMEOUT_MS = 30_000;

const REDACT_PARAMS = /([?&](?:access_token|key|token|signature|X-Goog-Signature|X-Goog-Credential)=)[^&#]*/gi;

/** A URL safe to print: credentials in the userinfo or the query are masked. */
export function redactUrl(url: string | URL): string {
  const u = new URL(String(url));
  if (u.username !== "" || u.password !== "") {
    u.username = "REDACTED";
    u.password = "";
  }
  return u.toString().replace(REDACT_PARAMS, "$1REDACTED");
}

/**
 * A small JSON/stream HTTP client over undici with keep-alive, Google-style error parsing into
 * `HttpError`, and retries of transient failures with p-retry (DESIGN §7: never 400/403/404).
 */
export class HttpClient {
  readonly #auth: AuthHeaders;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #retry: RetryPolicy;
  readonly #clock: Clock;
  readonly #userAgent: string;
  readonly #onRetry: HttpClientOptions["onRetry"];
  readonly #signal: AbortSignal | undefined;

  constructor(options: HttpClientOptions = {}) {
    this.#auth = options.auth ?? anonymousAuth;
    this.#ownsDispatcher = options.dispatcher === undefined;
    const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#dispatcher =
      options.dispatcher ??
      new Agent({
        connections: options.connections ?? 64,
        keepAliveTimeout: 30_000,
        headersTimeout: timeout,
        bodyTimeout: timeout,
        pipelining: 1,
      });
    this.#retry = options.retry ?? defaultRetryPolicy;
    this.#clock = options.clock ?? systemClock;
    this.#userAgent = options.userAgent ?? "hcexport/0.1";
    this.#onRetry = options.onRetry;
    this.#signal = options.signal;
  }

  get auth(): AuthHeaders {
    return this.#auth;
  }

  /**
   * Sends a request and parses a JSON response (an empty body gives `undefined`), with `JSON.parse`
   * or `options.parse` (which throws a SyntaxError for text that is not JSON).
   */
  async json<T>(
    method: string,
    url: string | URL,
    options: RequestOptions & { readonly parse?: (text: string) => unknown } = {},
  ): Promise<T> {
    const target = withQuery(url, options.query);
    return this.#retrying(method, target, options, async () => {
      const { res, secrets } = await this.#send(method, target, options, { accept: "application/json" });
      const text = await res.body.text();
      if (!isOk(res.statusCode) && !(options.accept ?? []).includes(res.statusCode)) {
        throw errorFromResponse(method, target, res.statusCode, res.headers, text, this.#clock.now(), secrets);
      }
      if (text === "") return undefined as T;
      try {
        return (options.parse ?? JSON.parse)(text) as T;
      } catch {
        throw new HttpError({
          status: res.statusCode,
          method,
          url: redactUrl(target),
          message: `response is not JSON: ${scrub(oneLine(text).slice(0, 200), secrets)}`,
        });
      }
    });
  }

  /**
   * Opens a streaming response. Non-2xx responses (other than `accept`) are thrown as `HttpError`
   * after draining the body; the caller must consume or destroy `body`. Not retried here: a
   * stream's consumer decides whether to retry after partial reads.
   */
  async stream(method: string, url: string | URL, options: RequestOptions = {}): Promise<StreamResponse> {
    const target = withQuery(url, options.query);
    const { res, secrets } = await this.#send(method, target, options, {});
    if (!isOk(res.statusCode) && !(options.accept ?? []).includes(res.statusCode)) {
      const text = await res.body.text().catch(() => "");
      throw errorFromResponse(method, target, res.statusCode, res.headers, text, this.#clock.now(), secrets);
    }
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  /**
   * GETs a body of known size (`into.byteLength`, or the buffer `into` chooses from the answer's
   * headers) straight into that buffer (`dispatchInto`: no body stream). A non-2xx answer rejects
   * with the `HttpError` `stream` would throw, a longer or shorter body with an `IntegrityError`.
   * Not retried here, like `stream`. Resolves with the answer's status and headers.
   */
  async receive(
    method: string,
    url: string | URL,
    into: IntoTarget,
    options: Omit<RequestOptions, "accept" | "body" | "retry"> & { readonly name: string; readonly sizeFrom?: string },
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
    const target = withQuery(url, options.query);
    const { signal: own, ...rest } = options;
    const { headers, secrets } = await this.#prepare(target, rest, {});
    // The client's signal and the request's, each listened to (no composite signal per request).
    const signals: AbortSignal[] = [];
    for (const s of [this.#signal, own]) if (s !== undefined && !signals.includes(s)) signals.push(s);
    return dispatchInto(
      this.#dispatcher,
      { url: target, method: method as Dispatcher.HttpMethod, headers, signals },
      into,
      {
        name: options.name,
        ...(options.sizeFrom === undefined ? {} : { sizeFrom: options.sizeFrom }),
        failure: (status, h, text) => errorFromResponse(method, target, status, h, text, this.#clock.now(), secrets),
        transportError: (err) => transportError(target, err),
      },
    );
  }

  /** Runs `fn` with this client's retry policy and retry notices. */
  retrying<T>(method: string, url: string | URL, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.#retrying(method, new URL(String(url)), signal === undefined ? {} : { signal }, fn);
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  #retrying<T>(method: string, target: URL, options: RequestOptions, fn: () => Promise<T>): Promise<T> {
    const signal = eitherSignal(this.#signal, options.signal);
    signal?.throwIfAborted();
    if (options.retry === false) return fn();
    return withRetry(fn, {
      policy: this.#retry,
      clock: this.#clock,
      ...(signal === undefined ? {} : { signal }),
      onRetry: (n) => this.#onRetry?.({ ...n, method, url: redactUrl(target) }),
    });
  }

  /** Sends one request; `secrets` are the credential values it carried (scrubbed from error messages). */
  async #send(
    method: string,
    target: URL,
    options: RequestOptions,
    defaults: Record<string, string>,
  ): Promise<{ res: Dispatcher.ResponseData; secrets: string[] }> {
    const { headers, body, signal, secrets } = await this.#prepare(target, options, defaults);
    const res = await request(target, {
      method: method as Dispatcher.HttpMethod,
      headers,
      dispatcher: this.#dispatcher,
      ...(body === undefined ? {} : { body }),
      ...(signal === undefined ? {} : { signal }),
    }).catch((err: unknown) => {
      throw transportError(target, err);
    });
    return { res, secrets };
  }

  /** A request's headers (with credentials), body and signal; `secrets` are the credential values it carries. */
  async #prepare(
    target: URL,
    options: RequestOptions,
    defaults: Record<string, string>,
  ): Promise<{
    headers: Record<string, string>;
    body: string | Buffer | undefined;
    signal: AbortSignal | undefined;
    secrets: string[];
  }> {
    const auth = await this.#auth.headers(target);
    const headers: Record<string, string> = { "user-agent": this.#userAgent, ...defaults, ...auth, ...options.headers };
    let body: string | Buffer | undefined;
    if (options.body !== undefined) {
      if (typeof options.body === "string" || Buffer.isBuffer(options.body)) body = options.body;
      else {
        body = JSON.stringify(options.body);
        headers["content-type"] ??= "application/json; charset=utf-8";
      }
    }
    const signal = eitherSignal(this.#signal, options.signal);
    signal?.throwIfAborted();
    return { headers, body, signal, secrets: secretsOf(auth) };
  }
}

/** A host that does not resolve is a wrong endpoint or no network: say so (UnreachableError, not retried). */
function transportError<E>(target: URL, err: E): E | UnreachableError {
  const dns = unknownHost(err);
  return dns === undefined ? err : new UnreachableError(target.host, dns.code, err);
}

function isOk(status: number): boolean {
  return status >= 200 && status < 300;
}

/** Appends query parameters (arrays repeat the key, undefined is skipped). */
export function withQuery(url: string | URL, query: RequestOptions["query"]): URL {
  const u = new URL(String(url));
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const item of v) u.searchParams.append(k, String(item));
    else u.searchParams.set(k, String(v));
  }
  return u;
}

/**
 * Turns a non-2xx response into an `HttpError`, reading Google's error envelope
 * (`{"error":{"code","message","status","errors":[{"reason"}]}}`) when present.
 */
export function errorFromResponse(
  method: string,
  url: URL,
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  now: number,
  secrets: readonly string[] = [],
): HttpError {
  let message = oneLine(text).slice(0, 500) || `HTTP ${status}`;
  let reason: string | undefined;
  try {
    const parsed = JSON.parse(text) as {
      error?: { message?: unknown; status?: unknown; errors?: Array<{ reason?: unknown }> } | string;
    };
    if (typeof parsed.error === "object" && parsed.error !== null) {
      if (typeof parsed.error.message === "string") message = parsed.error.message;
      const r = parsed.error.errors?.[0]?.reason ?? parsed.error.status;
      if (typeof r === "string") reason = r;
    } else if (typeof parsed.error === "string") message = parsed.error;
  } catch {
    // not JSON: keep the text
  }
  const ra = headers["retry-after"];
  const retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra, now);
  return new HttpError({
    status,
    method,
    url: redactUrl(url),
    // A server (or proxy) may quote the request back, credentials included; and messages stay one line.
    message: scrub(oneLine(message), secrets),
    ...(reason === undefined ? {} : { reason }),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });
}

/** Whitespace runs (newlines of an HTML page…) as single spaces, so an error stays one line. */
function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** The credential values in auth headers: whole values and the token after the scheme (`Bearer X`). */
function secretsOf(headers: Record<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (!/authorization|api-key|token/i.test(k)) continue;
    out.push(v);
    const token = v.split(/\s+/)[1];
    if (token !== undefined) out.push(token);
  }
  return out.filter((v) => v.length >= 8).sort((a, b) => b.length - a.length);
}

/** The exact credential values this request carried, then anything credential-shaped (src/core/redact.ts). */
function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("REDACTED");
  return redactSecrets(out);
}
