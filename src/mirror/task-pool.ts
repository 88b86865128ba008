/**
 * A bounded pool: `run` waits for a free slot before starting a task, so a producer (the march)
 * never queues more than `limit` tasks and memory stays flat however long the listing is.
 * Tasks must not reject (they record their own failures).
 */
export class TaskPool {
  readonly limit: number;
  readonly #running = new Set<Promise<void>>();

  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }

  get size(): number {
    return this.#running.size;
  }

  async run(task: () => Promise<void>): Promise<void> {
    while (this.#running.size >= this.limit) await Promise.race(this.#running);
    const p: Promise<void> = task().finally(() => this.#running.delete(p));
    this.#running.add(p);
  }

  /** Waits for every started task to settle. */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }
}
