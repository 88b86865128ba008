/**
 * A set that remembers at most `max` members, forgetting the oldest added first: a cache of facts
 * that are cheap to re-establish (a directory already made and checked), so that memory stays flat
 * in the number of members ever added. `has` answers false for a forgotten member, which only
 * costs the caller a re-check.
 */
export class RecentSet<T> {
  readonly #members = new Set<T>();
  /** Members in the order added, as a ring: the slot at `#next` holds the oldest once it is full. */
  readonly #ring: T[] = [];
  readonly #max: number;
  #next = 0;

  constructor(max: number) {
    if (!(Number.isInteger(max) && max >= 1)) throw new RangeError(`RecentSet size must be ≥ 1, got ${max}`);
    this.#max = max;
  }

  has(value: T): boolean {
    return this.#members.has(value);
  }

  add(value: T): this {
    if (this.#members.has(value)) return this;
    // No iterator per eviction: a mirror adds two directories per file.
    if (this.#ring.length === this.#max) this.#members.delete(this.#ring[this.#next]!);
    this.#ring[this.#next] = value;
    this.#next = (this.#next + 1) % this.#max;
    this.#members.add(value);
    return this;
  }

  get size(): number {
    return this.#members.size;
  }
}
