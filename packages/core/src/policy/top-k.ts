/**
 * The K smallest items by a key, in O(K) memory: a bounded max-heap (the largest kept item on
 * top, replaced when a smaller one comes). Each walk shard keeps one of its candidates and the
 * coordinator merges the shards' lists into another, so no one ever holds more than K.
 */
export class TopK<T> {
  readonly #k: number;
  readonly #less: (a: T, b: T) => boolean;
  readonly #heap: T[] = [];

  /** `less(a, b)`: a comes before b (is better). */
  constructor(k: number, less: (a: T, b: T) => boolean) {
    if (!Number.isInteger(k) || k < 0)
      throw new RangeError(`top-k size ${k} is not an integer >= 0`);
    this.#k = k;
    this.#less = less;
  }

  get size(): number {
    return this.#heap.length;
  }

  /** Offers an item; returns whether it was kept. */
  offer(item: T): boolean {
    const h = this.#heap;
    if (this.#k === 0) return false;
    if (h.length < this.#k) {
      h.push(item);
      this.#up(h.length - 1);
      return true;
    }
    if (!this.#less(item, h[0]!)) return false;
    h[0] = item;
    this.#down(0);
    return true;
  }

  /** The items kept, best first (the heap is left as is). */
  sorted(): T[] {
    return [...this.#heap].sort((a, b) => (this.#less(a, b) ? -1 : this.#less(b, a) ? 1 : 0));
  }

  // Max-heap on `less`: a parent is never less than its children.
  #up(i: number): void {
    const h = this.#heap;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  #down(i: number): void {
    const h = this.#heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#less(h[m]!, h[l]!)) m = l;
      if (r < h.length && this.#less(h[m]!, h[r]!)) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i]!, h[m]!];
      i = m;
    }
  }
}
