import { systemClock, type Clock } from "../core/clock.ts";
import { backoffDelay, type BackoffPolicy } from "../core/backoff.ts";
import { mirror, type MirrorOptions, type MirrorSummary } from "../mirror/mirror.ts";

/** Between passes while the export runs: 250 ms after a pass that found something, growing to 2 s when idle. */
export const followBackoff: BackoffPolicy = { initialMs: 250, maxMs: 2000, multiplier: 1.6, jitter: "none" };

export interface FollowMirrorOptions {
  readonly mirror: MirrorOptions;
  /** Settles when the export's operation has ended (rejects when it failed or could not be waited for). */
  readonly until: Promise<unknown>;
  /** false: wait for `until`, then one pass (the order before follow mode). */
  readonly follow: boolean;
  readonly clock?: Clock;
  readonly backoff?: BackoffPolicy;
}

/**
 * The mirror of one lane, following its export: while the operation runs, the prefix is listed
 * again and again and objects are downloaded as they appear (a GCS object is visible only once
 * complete; every download is pinned to the listed generation); idle passes back off up to the
 * cap. After the operation ends, one final pass reconciles everything, and only that pass may
 * delete (`--delete`). If the operation fails, the pass in flight is stopped and `until`'s error
 * is thrown. Returns the run's summary: downloads and bytes of every pass, the rest from the final one.
 */
export async function followMirror(o: FollowMirrorOptions): Promise<MirrorSummary> {
  if (!o.follow) {
    await o.until;
    return mirror(o.mirror);
  }
  const clock = o.clock ?? systemClock;
  const policy = o.backoff ?? followBackoff;
  const t0 = clock.now();
  let ended = false;
  let failure: { error: unknown } | undefined;
  const stop = new AbortController();
  const end = o.until.then(
    () => void (ended = true),
    (error: unknown) => {
      ended = true;
      failure = { error };
      stop.abort(error);
    },
  );
  const signal = o.mirror.signal === undefined ? stop.signal : AbortSignal.any([o.mirror.signal, stop.signal]);
  const early = { downloaded: 0, bytes: 0, hashed: 0 };
  let idle = 0;
  while (!ended) {
    let pass: MirrorSummary;
    try {
      pass = await mirror({ ...o.mirror, delete: false, signal });
    } catch (err) {
      if (failure !== undefined) throw failure.error;
      throw err;
    }
    early.downloaded += pass.downloaded;
    early.bytes += pass.bytes;
    early.hashed += pass.hashed;
    if (pass.destinationFault !== undefined) return { ...pass, ...early };
    idle = pass.downloaded > 0 ? 1 : idle + 1;
    if (ended) break;
    const nap = new AbortController();
    await Promise.race([clock.sleep(backoffDelay(idle, policy), nap.signal).catch(() => {}), end]);
    nap.abort();
    o.mirror.signal?.throwIfAborted();
  }
  await end;
  if (failure !== undefined) throw failure.error;
  const final = await mirror(o.mirror);
  return {
    ...final,
    downloaded: final.downloaded + early.downloaded,
    bytes: final.bytes + early.bytes,
    hashed: final.hashed + early.hashed,
    // Files an earlier pass of this run fetched are not "up to date from before".
    skipped: Math.max(0, final.skipped - early.downloaded),
    durationMs: clock.now() - t0,
  };
}
