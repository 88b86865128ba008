/**
 * Settles with `work`, or rejects with the signal's reason as soon as `signal` aborts: for calls
 * into libraries that take no signal (the Cloud Storage SDK), so a Ctrl-C never waits for their
 * retries. The abandoned call finishes (or not) in the background; its result is ignored.
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason as Error);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(signal.reason as Error);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e as Error);
      },
    );
  });
}

/** Both signals as one (either aborts it); undefined when neither is given. */
export function eitherSignal(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  if (a === undefined) return b;
  if (b === undefined || a === b) return a;
  return AbortSignal.any([a, b]);
}

/**
 * Aborts `target` with `source`'s reason when `source` aborts (at once if it has). Returns the
 * unlink, to call when `target`'s work is over, so that a long-lived `source` keeps no listener.
 * For a run's signal that every request listens to: listening to a plain signal costs less than
 * to a composite one (`AbortSignal.any` follows its sources on every listener added).
 */
export function abortWith(source: AbortSignal | undefined, target: AbortController): () => void {
  if (source === undefined) return () => {};
  if (source.aborted) {
    target.abort(source.reason);
    return () => {};
  }
  const onAbort = () => target.abort(source.reason);
  source.addEventListener("abort", onAbort, { once: true });
  return () => source.removeEventListener("abort", onAbort);
}
