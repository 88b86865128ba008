/**
 * A set that remembers at most `max` members, forgetting the oldest added first: a cache of facts
 * that are cheap to re-establish (a directory already made and checked), so that memory stays flat
 * in the number of members ever added. `has` answers false for a forgotten member, which only
 * costs the caller a re-check.
 */
export class RecentSet<T> {
  readonly #max: number;
  readonly #members = new Set<T>();

  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new RangeError(`RecentSet size must be ≥ 1, got ${max}`);
    this.#max = max;
  }

  has(value: T): boolean {
    return this.#members.has(value);
  }

  add(value: T): this {
    if (this.#members.has(value)) return this;
    this.#members.add(value);
    if (this.#members.size > this.#max) this.#members.delete(this.#members.values().next().value as T);
    return this;
  }

  get size(): number {
    return this.#members.size;
  }
}
