/**
 * A counting semaphore: at most `limit` tasks inside `run` at once, admitted in arrival order. A
 * task holds its permit only while it runs (no hold-and-wait), and a finished one hands the permit
 * straight to the next waiter. The mirror's network stage (the requests in flight) and big
 * objects' slices are each bounded by one.
 */
export class Gate {
  readonly limit: number;
  #inUse = 0;
  readonly #waiting: Array<() => void> = [];
  constructor(limit: number) {
    this.limit = Math.max(1, Math.floor(limit));
  }

  /** Permits held right now. */
  get inUse(): number {
    return this.#inUse;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#inUse >= this.limit) await new Promise<void>((resolve) => this.#waiting.push(resolve));
    else this.#inUse++;
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next === undefined) this.#inUse--;
      else next(); // the permit passes straight to the next waiter
    }
  }
}
