import pRetry, { AbortError } from "p-retry";
import { backoffDelay, defaultBackoff, type BackoffPolicy } from "./backoff.ts";
import { systemClock, type Clock } from "./clock.ts";
import { HttpError, IntegrityError } from "./errors.ts";

/** Retry policy as data (DESIGN §7). */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  readonly retries: number;
  readonly backoff: BackoffPolicy;
  /** Give up retrying once this much time has passed since the first attempt. */
  readonly maxRetryTimeMs?: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: 6,
  backoff: { initialMs: 200, maxMs: 10_000, multiplier: 2, jitter: "equal" },
};
export const pollRetryPolicy: RetryPolicy = { retries: 8, backoff: defaultBackoff };

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRYABLE_CODES = new Set([
  // A stage thread died with the object's bytes (stage-pool.ts): fetch it again.
  "HCX_STAGE_LOST",
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "UND_ERR_RES_CONTENT_LENGTH_MISMATCH",
  "UND_ERR_ABORTED",
]);

/**
 * Whether an error is transient: 408/429/5xx, connection resets and timeouts, truncated or corrupt
 * bodies. Never 400/401/403/404/409/412, unsafe names or usage errors.
 */
export function isRetryable(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof HttpError) return RETRYABLE_STATUS.has(e.status);
    if (e instanceof IntegrityError) return true;
    if (typeof e === "object") {
      const code = (e as { code?: unknown }).code;
      if (typeof code === "string" && RETRYABLE_CODES.has(code)) return true;
      const message = (e as { message?: unknown }).message;
      if (message === "terminated" || message === "other side closed") return true;
      e = (e as { cause?: unknown }).cause;
    } else break;
  }
  return false;
}

/** What a retry loop reports before it sleeps. */
export interface RetryNotice {
  readonly attempt: number;
  readonly delayMs: number;
  readonly error: unknown;
}

export interface RetryOptions {
  readonly policy?: RetryPolicy;
  readonly clock?: Clock;
  readonly signal?: AbortSignal;
  readonly random?: () => number;
  readonly isRetryable?: (err: unknown) => boolean;
  /** Called before each wait, e.g. to emit a `retry` event. */
  readonly onRetry?: (notice: RetryNotice) => void;
}

/**
 * Runs `fn` with p-retry: retryable errors are retried with capped, jittered exponential backoff
 * (or the server's `Retry-After`, whichever is longer, up to the cap); others fail at once.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy = options.policy ?? defaultRetryPolicy;
  const clock = options.clock ?? systemClock;
  const retryable = options.isRetryable ?? isRetryable;
  return pRetry(
    async (attempt) => {
      try {
        return await fn(attempt);
      } catch (err) {
        if (!retryable(err)) throw new AbortError(err instanceof Error ? err : new Error(String(err)));
        throw err;
      }
    },
    {
      retries: policy.retries,
      minTimeout: 0,
      maxTimeout: 0,
      factor: 1,
      ...(policy.maxRetryTimeMs === undefined ? {} : { maxRetryTime: policy.maxRetryTimeMs }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft <= 0) return;
        const computed = backoffDelay(attemptNumber, policy.backoff, options.random);
        const serverAsked = error instanceof HttpError ? error.retryAfterMs : undefined;
        const delayMs = Math.min(policy.backoff.maxMs, Math.max(computed, serverAsked ?? 0));
        options.onRetry?.({ attempt: attemptNumber, delayMs, error });
        await clock.sleep(delayMs, options.signal);
      },
    },
  );
}
