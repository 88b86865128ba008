import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { systemClock, type Clock } from "../core/clock.ts";
import { HcexportError, OperationFailedError } from "../core/errors.ts";
import type { EventSink } from "../core/events.ts";
import { pollRetryPolicy, withRetry } from "../core/retry.ts";
import type { Operation } from "../gcp/healthcare.ts";
import { defaultPredictPolicy, predictPollDelay, type PollSample, type PredictPolicy } from "./predict-poll.ts";

export type OperationEvent =
  | {
      readonly kind: "operation.progress";
      readonly operation: string;
      readonly success: number;
      readonly failure: number;
      readonly pending: number;
    }
  | {
      readonly kind: "operation.retry";
      readonly operation: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly error: string;
    }
  | {
      readonly kind: "operation.done";
      readonly operation: string;
      readonly success: number;
      readonly failure: number;
      readonly ok: boolean;
    };

export interface PollOptions {
  readonly clock?: Clock;
  /** Delay between polls until the counters give a rate: capped exponential with jitter (default 1 s → 30 s). */
  readonly backoff?: BackoffPolicy;
  /** Once the counters move, poll near the predicted end (src/workflow/predict-poll.ts); false: backoff only. */
  readonly predict?: Partial<PredictPolicy> | false;
  /** Give up (not cancel) after this long. Default 24 h. */
  readonly deadlineMs?: number;
  readonly onEvent?: EventSink<OperationEvent>;
  readonly signal?: AbortSignal;
  readonly random?: () => number;
}

export const defaultPollBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, multiplier: 1.5, jitter: "equal" };

/** Counters as numbers (the API sends int64 as strings and omits zeros). */
export function countersOf(op: Operation): { success: number; failure: number; pending: number } {
  const c = op.metadata?.counter ?? {};
  return { success: Number(c.success ?? 0), failure: Number(c.failure ?? 0), pending: Number(c.pending ?? 0) };
}

/**
 * Polls a long-running operation to its end (the gax-nodejs shape): capped exponential backoff
 * with jitter between polls, transient errors of each GET retried, progress events only when the
 * counters change, an overall deadline. Resolves with the finished operation; a finished
 * operation with `error` (or with neither `error` nor `response`) rejects with exit code 4.
 */
export async function pollOperation(
  get: (name: string) => Promise<Operation>,
  name: string,
  options: PollOptions = {},
): Promise<Operation> {
  const clock = options.clock ?? systemClock;
  const backoff = options.backoff ?? defaultPollBackoff;
  const deadline = clock.now() + (options.deadlineMs ?? 24 * 3600_000);
  const emit = options.onEvent ?? (() => {});
  let last = "";
  const samples: PollSample[] = [];
  const predict = options.predict === false ? undefined : { ...defaultPredictPolicy, ...options.predict };
  for (let poll = 1; ; poll++) {
    const op = await withRetry(() => get(name), {
      policy: pollRetryPolicy,
      clock,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      onRetry: (n) =>
        emit({
          kind: "operation.retry",
          operation: name,
          attempt: n.attempt,
          delayMs: n.delayMs,
          error: n.error instanceof Error ? n.error.message : String(n.error),
        }),
    });
    const counters = countersOf(op);
    const key = `${counters.success}/${counters.failure}/${counters.pending}`;
    if (key !== last && !op.done) emit({ kind: "operation.progress", operation: name, ...counters });
    last = key;
    samples.push({ at: clock.now(), completed: counters.success + counters.failure, pending: counters.pending });
    if (samples.length > 64) samples.splice(0, samples.length - 64);
    if (op.done === true) {
      const ok = op.error === undefined && op.response !== undefined;
      emit({ kind: "operation.done", operation: name, success: counters.success, failure: counters.failure, ok });
      if (op.error !== undefined) {
        const logs = op.metadata?.logsUrl;
        throw new OperationFailedError(
          name,
          `operation ${name} failed (code ${op.error.code}): ${op.error.message}${counters.failure > 0 ? ` [${counters.success} succeeded, ${counters.failure} failed]` : ""}${logs ? `; logs: ${logs}` : ""}`,
          {
            ...(logs === undefined ? {} : { logsUrl: logs }),
            hint:
              op.error.code === 7
                ? "grant the source project's Healthcare service agent roles/storage.objectAdmin on the bucket ('hcexport iam grant …' or --grant-iam), then run again"
                : "see the operation's logs; then run again (the export overwrites what it already wrote)",
          },
        );
      }
      if (op.response === undefined)
        throw new OperationFailedError(name, `operation ${name} finished without a result or an error`);
      return op;
    }
    const predicted = predict === undefined ? undefined : predictPollDelay(samples, clock.now(), predict);
    const wait = predicted ?? backoffDelay(poll, backoff, options.random);
    if (clock.now() + wait > deadline) {
      throw new HcexportError(`gave up waiting for ${name} after the deadline; it is still running`, 1, {
        hint: `resume waiting with 'hcexport operations wait ${name}'`,
      });
    }
    await clock.sleep(wait, options.signal);
  }
}
