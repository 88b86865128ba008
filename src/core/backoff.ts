/** Capped exponential backoff as data, with jitter (pure). */
export interface BackoffPolicy {
  /** Delay before the first retry, in ms. */
  readonly initialMs: number;
  /** Upper bound of any single delay, in ms. */
  readonly maxMs: number;
  /** Growth factor per attempt. */
  readonly multiplier: number;
  /** `full`: uniform in [0, d]; `equal`: uniform in [d/2, d]; `none`: exactly d. */
  readonly jitter: "full" | "equal" | "none";
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, multiplier: 2, jitter: "equal" };

/**
 * The delay before retry number `attempt` (1-based).
 * @param random a source of uniform [0,1) numbers, injected for tests
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const exp = policy.initialMs * policy.multiplier ** Math.max(0, attempt - 1);
  const capped = Math.min(policy.maxMs, exp);
  switch (policy.jitter) {
    case "none":
      return capped;
    case "full":
      return Math.floor(random() * capped);
    case "equal":
      return Math.floor(capped / 2 + random() * (capped / 2));
  }
}

/**
 * Parses an HTTP `Retry-After` value (delta-seconds or an HTTP date) into ms, or undefined.
 * @param now the current time in ms, for the date form
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined || value.trim() === "") return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
