import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Clock } from "../../src/core/clock.ts";
import type { Operation } from "../../src/gcp/healthcare.ts";
import { pollOperation } from "../../src/workflow/poll-operation.ts";
import { defaultPredictPolicy, predictPollDelay } from "../../src/workflow/predict-poll.ts";

/** A clock whose sleeps advance time at once. */
function fakeClock(start = 1_000_000): Clock & { t: number } {
  const c = {
    t: start,
    now: () => c.t,
    sleep: async (ms: number) => void (c.t += Math.max(0, ms)),
  };
  return c;
}

/** An export of `total` instances at `perSecond`, started at `t0`, read through the fake clock; counts GETs. */
function exportOp(
  clock: { now(): number },
  t0: number,
  total: number,
  perSecond: number,
  rateAt?: (t: number) => number,
) {
  const polls: number[] = [];
  const doneAt = t0 + (total / perSecond) * 1000;
  const get = async (name: string): Promise<Operation> => {
    const now = clock.now();
    polls.push(now);
    const completed = Math.min(total, Math.floor(rateAt === undefined ? ((now - t0) / 1000) * perSecond : rateAt(now)));
    const done = completed >= total;
    return {
      name,
      metadata: { counter: { success: String(completed), pending: String(total - completed) } },
      ...(done ? { done: true, response: { "@type": "ExportDicomDataResponse" } } : {}),
    };
  };
  return { get, polls, doneAt };
}

describe("predictPollDelay (pure)", () => {
  const p = defaultPredictPolicy;
  test("no rate yet: undefined (the caller backs off)", () => {
    assert.equal(predictPollDelay([], 0), undefined);
    assert.equal(predictPollDelay([{ at: 0, completed: 0, pending: 10 }], 1000), undefined);
    assert.equal(
      predictPollDelay(
        [
          { at: 0, completed: 5, pending: 10 },
          { at: 1000, completed: 5, pending: 10 },
        ],
        1000,
      ),
      undefined,
      "counters that did not move give no rate",
    );
  });
  test("far from the end: at least the steady interval, at most the cap; near it: just before it; past it: the tail", () => {
    const at = (remainingS: number) =>
      predictPollDelay(
        [
          { at: 0, completed: 0, pending: 100_000 },
          { at: 1000, completed: 100, pending: remainingS * 100 },
        ],
        1000,
      )!;
    assert.equal(at(1000), p.maxMs);
    assert.equal(at(30), 15_000);
    assert.equal(at(21), 10_500);
    assert.equal(at(15), 14_500, "within two steady intervals: land half a tail before the predicted end");
    assert.equal(at(0.2), p.tailMs);
  });
});

describe("pollOperation notices the end on time", () => {
  for (const [total, rate] of [
    [3000, 100],
    [600, 100],
    [50_000, 100],
    [10_700, 37],
  ] as const) {
    test(`${total} instances at ${rate}/s: noticed ≤ 2 s after the end, ≤ 1 poll per 10 s until 20 s before it`, async () => {
      const clock = fakeClock();
      const op = exportOp(clock, clock.t, total, rate);
      await pollOperation(op.get, "op/1", { clock, random: () => 0.5 });
      const late = clock.now() - op.doneAt;
      assert.ok(late >= 0 && late <= 2000, `noticed ${late} ms after the end`);
      const steady = op.polls.filter((t) => t > op.polls[0]! + 10_000 && t < op.doneAt - 20_000);
      for (let i = 1; i < steady.length; i++)
        assert.ok(steady[i]! - steady[i - 1]! >= 10_000, `polls ${steady[i - 1]} and ${steady[i]} closer than 10 s`);
      const durationS = (op.doneAt - op.polls[0]!) / 1000;
      assert.ok(op.polls.length <= Math.max(12, durationS / 10 + 10), `${op.polls.length} polls for ${durationS} s`);
    });
  }

  test("a rate that slows down half way still ends noticed on time (the prediction is refined at each poll)", async () => {
    const clock = fakeClock();
    const t0 = clock.t;
    // 100/s for 60 s, then 25/s: 6000 + 1500 = 7500 instances, ending at t0 + 120 s.
    const rateAt = (t: number) => {
      const s = (t - t0) / 1000;
      return s <= 60 ? s * 100 : 6000 + (s - 60) * 25;
    };
    const op = exportOp(clock, t0, 7500, 100, rateAt);
    await pollOperation(op.get, "op/1", { clock, random: () => 0.5 });
    const late = clock.now() - (t0 + 120_000);
    assert.ok(late >= 0 && late <= 2000, `noticed ${late} ms after the end`);
  });

  test("without prediction (predict: false) the backoff alone is used, as before: noticed late", async () => {
    const clock = fakeClock();
    const op = exportOp(clock, clock.t, 3000, 100);
    await pollOperation(op.get, "op/1", { clock, random: () => 0.5, predict: false });
    assert.ok(clock.now() - op.doneAt > 2000, "the backed-off poller notices the end late (why prediction exists)");
  });
});
