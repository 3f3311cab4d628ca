import type { RateLimit } from "@hsmfleet/core";

/**
 * A token bucket by count and by bytes (Robinhood's `max_action_count`/`max_action_volume` per
 * period): full at start (a burst of one period's worth), refilled continuously at
 * count / period and bytes / period. The coordinator holds it and dispatches the fleet's actions
 * through it, so the limit is fleet-wide however many workers carry them out.
 */
export class TokenBucket {
  readonly #rate: RateLimit;
  #count: number;
  #bytes: number;
  #at: number;
  readonly #now: () => number;

  constructor(rate: RateLimit, now: () => number = Date.now) {
    this.#rate = rate;
    this.#count = rate.count;
    this.#bytes = rate.bytes;
    this.#now = now;
    this.#at = now();
  }

  #refill(): void {
    const t = this.#now();
    const dt = t - this.#at;
    this.#at = t;
    const { count, bytes, periodMs } = this.#rate;
    if (count > 0) this.#count = Math.min(count, this.#count + (count * dt) / periodMs);
    if (bytes > 0) this.#bytes = Math.min(bytes, this.#bytes + (bytes * dt) / periodMs);
  }

  /**
   * How many of `sizes` (in order) may go now; they are taken from the bucket. A file larger
   * than a whole period's bytes goes alone once the bucket is full (else it would never go).
   */
  take(sizes: readonly number[]): number {
    const n = this.available(sizes);
    const taken = sizes.slice(0, n).reduce((a, b) => a + b, 0);
    if (this.#rate.count > 0) this.#count -= n;
    if (this.#rate.bytes > 0) this.#bytes -= taken;
    return n;
  }

  /** How many of `sizes` (in order) could go now, without taking them. */
  available(sizes: readonly number[]): number {
    this.#refill();
    const { count, bytes } = this.#rate;
    let n = 0;
    let used = 0;
    for (const size of sizes) {
      if (count > 0 && this.#count < n + 1) break;
      const fullAlone = n === 0 && this.#bytes >= bytes;
      if (bytes > 0 && this.#bytes - used < size && !fullAlone) break;
      used += size;
      n++;
    }
    return n;
  }

  /** Milliseconds until the first `sizes.length` files (of those sizes) may go together. */
  waitMs(sizes: readonly number[]): number {
    this.#refill();
    const { count, bytes, periodMs } = this.#rate;
    let ms = 0;
    const k = Math.min(sizes.length, count > 0 ? count : sizes.length);
    if (count > 0 && this.#count < k) ms = Math.max(ms, ((k - this.#count) * periodMs) / count);
    if (bytes > 0) {
      const want = Math.min(
        bytes,
        sizes.slice(0, k).reduce((a, b) => a + b, 0),
      );
      const need = want - this.#bytes;
      if (need > 0) ms = Math.max(ms, (need * periodMs) / bytes);
    }
    return Math.ceil(ms);
  }
}
