/** One observation of an operation's progress counters. */
export interface PollSample {
  /** When the answer arrived (ms). */
  readonly at: number;
  /** success + failure */
  readonly completed: number;
  readonly pending: number;
}

/** How polls are placed once the counters give a rate. */
export interface PredictPolicy {
  /** Never poll more often than this while the predicted end is far (steady state). */
  readonly steadyMs: number;
  /** At or past the predicted end, poll this often (how late an end is noticed, plus one request). */
  readonly tailMs: number;
  /** Never wait longer than this between polls. */
  readonly maxMs: number;
  /** The rate is measured over the samples of this last stretch. */
  readonly windowMs: number;
}

export const defaultPredictPolicy: PredictPolicy = { steadyMs: 10_000, tailMs: 1000, maxMs: 30_000, windowMs: 120_000 };

/**
 * When to poll next, from the rate at which the counters move: the operation should end when the
 * pending instances are done at that rate. Far from that end, polls halve the remaining time but
 * stay ≥ `steadyMs` apart; within two steady intervals, the next poll lands just before the
 * predicted end; past it, polls come every `tailMs` until the operation says it is done. Returns
 * undefined when there is no rate yet (fewer than two samples that moved): use the backoff. Pure.
 */
export function predictPollDelay(
  samples: readonly PollSample[],
  now: number,
  policy: PredictPolicy = defaultPredictPolicy,
): number | undefined {
  const last = samples.at(-1);
  if (last === undefined || last.pending <= 0) return undefined;
  const first = samples.find((s) => s.at >= last.at - policy.windowMs && s.completed < last.completed);
  if (first === undefined || last.at <= first.at) return undefined;
  const rate = (last.completed - first.completed) / (last.at - first.at);
  const remaining = last.at + last.pending / rate - now;
  if (remaining > 2 * policy.steadyMs) return Math.min(policy.maxMs, Math.max(policy.steadyMs, remaining / 2));
  return Math.min(policy.maxMs, Math.max(policy.tailMs, remaining - policy.tailMs / 2));
}
