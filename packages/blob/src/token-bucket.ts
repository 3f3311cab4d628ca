/**
 * A token bucket for job-wide limits (requests per second, bytes per second). Tokens accrue at
 * `ratePerSec` up to `burst`; take(n) reserves n tokens at once and waits until they are paid for:
 * the balance may go negative (a request larger than the burst, or many callers at once), and each
 * caller waits until the balance it left behind is back at zero. So callers are served in the
 * order they arrived, and over any window the tokens spent stay within rate × window + burst.
 * charge(n) spends after the fact without waiting (a download whose size was not known before);
 * the next takers pay the debt.
 */

/** Time source; tests pass a fake one (no real-clock timing in tests). */
export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const abortReason = (signal: AbortSignal): Error => {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error("The operation was aborted", { cause: reason });
  err.name = "AbortError";
  return err;
};

/** The real clock: performance.now() and setTimeout. */
export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortReason(signal));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

export interface TokenBucketOptions {
  /** Tokens the bucket holds at most (and starts with). Default one second's worth, at least 1. */
  burst?: number;
  clock?: Clock;
}

export class TokenBucket {
  #rate: number;
  #burst: number;
  readonly #burstGiven: boolean;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;
  /** Tokens taken since creation (for counters and tests). */
  #spent = 0;

  constructor(ratePerSec: number, options: TokenBucketOptions = {}) {
    this.#rate = TokenBucket.#checkRate(ratePerSec);
    this.#burstGiven = options.burst !== undefined;
    this.#burst = options.burst ?? Math.max(1, ratePerSec);
    if (!(this.#burst > 0)) throw new RangeError(`burst must be > 0, got ${this.#burst}`);
    this.#clock = options.clock ?? systemClock;
    this.#tokens = this.#burst;
    this.#last = this.#clock.now();
  }

  static #checkRate(rate: number): number {
    if (!Number.isFinite(rate) || rate <= 0)
      throw new RangeError(`token rate must be a positive number per second, got ${rate}`);
    return rate;
  }

  get ratePerSec(): number {
    return this.#rate;
  }

  get spent(): number {
    return this.#spent;
  }

  /** Current balance (negative while callers wait or a debt is being paid). */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** A new rate from now on (the fleet's size changed); a default burst follows it. */
  setRate(ratePerSec: number): void {
    this.#refill();
    this.#rate = TokenBucket.#checkRate(ratePerSec);
    if (!this.#burstGiven) this.#burst = Math.max(1, ratePerSec);
    if (this.#tokens > this.#burst) this.#tokens = this.#burst;
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = now - this.#last;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed * this.#rate) / 1000);
      this.#last = now;
    }
  }

  /** Waits until `n` tokens are paid for. An abort while waiting gives the tokens back. */
  async take(n: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isFinite(n) || n < 0) throw new RangeError(`cannot take ${n} tokens`);
    if (signal?.aborted) throw abortReason(signal);
    if (n === 0) return;
    this.#refill();
    this.#tokens -= n;
    this.#spent += n;
    if (this.#tokens >= 0) return;
    const waitMs = (-this.#tokens * 1000) / this.#rate;
    try {
      await this.#clock.sleep(waitMs, signal);
    } catch (err) {
      this.#tokens += n;
      this.#spent -= n;
      throw err;
    }
  }

  /** Spends `n` tokens without waiting (may leave a debt the next takers pay). */
  charge(n: number): void {
    if (!Number.isFinite(n) || n <= 0) return;
    this.#refill();
    this.#tokens -= n;
    this.#spent += n;
  }
}
