import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, parseRetryAfter, type BackoffPolicy } from "../../src/core/backoff.ts";
import { isRetryable, withRetry } from "../../src/core/retry.ts";
import { HttpError, IntegrityError, UnsafeNameError } from "../../src/core/errors.ts";
import type { Clock } from "../../src/core/clock.ts";

const policy: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, multiplier: 2, jitter: "none" };

function fakeClock(): Clock & { slept: number[] } {
  const slept: number[] = [];
  let t = 0;
  return {
    slept,
    now: () => t,
    sleep: async (ms) => {
      slept.push(ms);
      t += ms;
    },
  };
}

const http = (status: number, retryAfterMs?: number) =>
  new HttpError({
    status,
    method: "GET",
    url: "http://x/",
    message: "m",
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
  });

describe("backoffDelay", () => {
  test("grows exponentially and is capped", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7].map((a) => backoffDelay(a, policy)),
      [1000, 2000, 4000, 8000, 16000, 30000, 30000],
    );
  });
  test("full jitter stays within [0, d) and equal jitter within [d/2, d]", () => {
    assert.equal(
      backoffDelay(3, { ...policy, jitter: "full" }, () => 0.999),
      3996,
    );
    assert.equal(
      backoffDelay(3, { ...policy, jitter: "full" }, () => 0),
      0,
    );
    assert.equal(
      backoffDelay(3, { ...policy, jitter: "equal" }, () => 0),
      2000,
    );
    assert.equal(
      backoffDelay(3, { ...policy, jitter: "equal" }, () => 0.999),
      3998,
    );
  });
});

describe("parseRetryAfter", () => {
  test("seconds and HTTP dates", () => {
    assert.equal(parseRetryAfter("7", 0), 7000);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
    assert.equal(parseRetryAfter("soon", 0), undefined);
    assert.equal(parseRetryAfter(undefined, 0), undefined);
  });
});

describe("isRetryable", () => {
  test("transient statuses, resets and integrity failures are retried; client errors are not", () => {
    for (const s of [408, 429, 500, 502, 503, 504]) assert.equal(isRetryable(http(s)), true, String(s));
    for (const s of [400, 401, 403, 404, 409, 412]) assert.equal(isRetryable(http(s)), false, String(s));
    assert.equal(isRetryable(Object.assign(new Error("reset"), { code: "ECONNRESET" })), true);
    assert.equal(
      isRetryable(new Error("wrapped", { cause: Object.assign(new Error("x"), { code: "UND_ERR_SOCKET" }) })),
      true,
    );
    assert.equal(isRetryable(new IntegrityError("crc")), true);
    assert.equal(isRetryable(new UnsafeNameError("../x", "dots")), false);
    assert.equal(isRetryable(new TypeError("bug")), false);
  });
});

describe("withRetry", () => {
  test("retries transient failures with backoff, then succeeds", async () => {
    const clock = fakeClock();
    let calls = 0;
    const result = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw http(503);
        return "ok";
      },
      { clock, policy: { retries: 5, backoff: policy } },
    );
    assert.equal(result, "ok");
    assert.equal(calls, 3);
    assert.deepEqual(clock.slept, [1000, 2000]);
  });

  test("honours Retry-After when it is longer than the computed delay, up to the cap", async () => {
    const clock = fakeClock();
    let calls = 0;
    await withRetry(
      async () => {
        calls++;
        if (calls === 1) throw http(429, 5000);
        if (calls === 2) throw http(429, 999_000);
        return 1;
      },
      { clock, policy: { retries: 5, backoff: policy } },
    );
    assert.deepEqual(clock.slept, [5000, 30000]);
  });

  test("fails at once, with the original error, on a non-retryable error", async () => {
    const clock = fakeClock();
    let calls = 0;
    const err = http(404);
    await assert.rejects(
      withRetry(
        async () => {
          calls++;
          throw err;
        },
        { clock },
      ),
      (e) => e === err,
    );
    assert.equal(calls, 1);
    assert.deepEqual(clock.slept, []);
  });

  test("gives up after the retry budget with the last error", async () => {
    const clock = fakeClock();
    let calls = 0;
    await assert.rejects(
      withRetry(
        async () => {
          calls++;
          throw http(503);
        },
        { clock, policy: { retries: 2, backoff: policy } },
      ),
      (e) => e instanceof HttpError && e.status === 503,
    );
    assert.equal(calls, 3);
  });
});
