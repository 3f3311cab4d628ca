/**
 * Adaptive request concurrency for one worker, after azcopy's AUTO tuner
 * (ste/concurrencyTuner.go): raise the number of parallel requests by a multiplier while each
 * raise buys throughput (at least a fifth of the linear gain), go back to the previous level when
 * it does not, and probe with a smaller multiplier (×2, then ×1.2) until a raise no longer pays.
 * Unlike azcopy, which tunes once per job, a worker lives across jobs and workloads, so it also:
 *
 * - halves the concurrency on any 429 / 503 answer (ServerBusy, throttling) and holds it there;
 * - cuts it by a quarter when, at an unchanged level and a similar request size, the mean request
 *   time more than doubles over the best seen at that level (the service slowing down — azcopy's
 *   "atypical request lifetime");
 * - probes again (×1.2) after a quiet stretch, since the best level moves with the workload;
 * - only raises the level while requests actually wait for a slot (otherwise more slots cannot
 *   be used and the throughput says nothing about them).
 *
 * The controller is pure arithmetic over samples (request-slots.ts); concurrency-driver.ts feeds
 * it on a timer. Tests drive it with made-up samples.
 */
import type { SlotSample } from "./request-slots.js";

export type ConcurrencyReason =
  "initial" | "seeking" | "backing-off" | "stable" | "at-max" | "throttled" | "latency" | "fixed";

export interface ConcurrencyControllerOptions {
  /** Starting level. Default 32 (azcopy's connection count for ≤ 4 CPUs), at most `max`. */
  initial?: number;
  /** Lowest level it backs off to. Default 4 (as azcopy), at most `max`. */
  min?: number;
  /** Highest level (--max-concurrency). Default 64. */
  max?: number;
  /** Share of the linear throughput gain a raise must bring. Default 0.2 (azcopy's fudge factor). */
  minGainShare?: number;
  /** Samples at a stable level before probing higher again. Default 30 (about a minute). */
  reprobeAfterSamples?: number;
  /** Mean request time, over the best at the same level, that counts as "latency climbed". Default 2. */
  latencyFactor?: number;
}

export const CONCURRENCY_DEFAULTS = {
  initial: 32,
  min: 4,
  max: 64,
  minGainShare: 0.2,
  reprobeAfterSamples: 30,
  latencyFactor: 2,
} as const;

const FIRST_MULTIPLIER = 2;
const SLOWDOWN = 5;
const MIN_MULTIPLIER = 1.19; // 1.2, a little less so the float comparisons stay robust

interface Reference {
  latencyMs: number;
  meanBytes: number;
}

export class ConcurrencyController {
  readonly min: number;
  readonly max: number;
  readonly #minGainShare: number;
  readonly #reprobeAfter: number;
  readonly #latencyFactor: number;
  #limit: number;
  #reason: ConcurrencyReason = "initial";
  #seeking = true;
  #multiplier = FIRST_MULTIPLIER;
  /** The level and throughput before the raise being judged. */
  #before: { limit: number; speed: number } | undefined;
  #reference: Reference | undefined;
  /** Samples still to skip after a change (they mix the old and the new level). */
  #settle = 0;
  #stableSamples = 0;

  constructor(options: ConcurrencyControllerOptions = {}) {
    this.max = options.max ?? CONCURRENCY_DEFAULTS.max;
    if (!Number.isSafeInteger(this.max) || this.max < 1)
      throw new RangeError(`max concurrency must be an integer ≥ 1, got ${this.max}`);
    this.min = Math.min(this.max, options.min ?? CONCURRENCY_DEFAULTS.min);
    this.#limit = Math.max(
      this.min,
      Math.min(this.max, options.initial ?? CONCURRENCY_DEFAULTS.initial),
    );
    this.#minGainShare = options.minGainShare ?? CONCURRENCY_DEFAULTS.minGainShare;
    this.#reprobeAfter = options.reprobeAfterSamples ?? CONCURRENCY_DEFAULTS.reprobeAfterSamples;
    this.#latencyFactor = options.latencyFactor ?? CONCURRENCY_DEFAULTS.latencyFactor;
    if (this.#limit >= this.max) {
      this.#seeking = false;
      this.#reason = "at-max";
    }
  }

  get limit(): number {
    return this.#limit;
  }

  get reason(): ConcurrencyReason {
    return this.#reason;
  }

  #set(limit: number, reason: ConcurrencyReason): number {
    this.#limit = Math.max(this.min, Math.min(this.max, Math.round(limit)));
    this.#reason = reason;
    this.#settle = 1;
    this.#reference = undefined;
    return this.#limit;
  }

  #hold(reason: ConcurrencyReason): void {
    this.#seeking = false;
    this.#stableSamples = 0;
    this.#before = undefined;
    this.#reason = reason;
  }

  /** Takes one sample and returns the level to use from now on. */
  observe(s: SlotSample): number {
    if (s.throttled > 0) {
      // The service asks for less: halve, and stay below the old level for a while.
      this.#hold("throttled");
      this.#multiplier = 1 + (FIRST_MULTIPLIER - 1) / SLOWDOWN;
      return this.#set(this.#limit / 2, "throttled");
    }
    if (s.requests === 0 || s.elapsedMs <= 0) return this.#limit; // idle: nothing to learn
    if (this.#settle > 0) {
      this.#settle--;
      return this.#limit;
    }
    const speed = s.bytes / s.elapsedMs;
    const latencyMs = s.latencyMsSum / s.requests;
    const meanBytes = s.bytes / s.requests;

    // Latency at an unchanged level, for requests of a similar size.
    const ref = this.#reference;
    if (ref === undefined || meanBytes > ref.meanBytes * 2 || meanBytes < ref.meanBytes / 2) {
      this.#reference = { latencyMs, meanBytes };
    } else if (latencyMs > ref.latencyMs * this.#latencyFactor && this.#limit > this.min) {
      this.#hold("latency");
      return this.#set(this.#limit * 0.75, "latency");
    } else if (latencyMs < ref.latencyMs) {
      ref.latencyMs = latencyMs;
    }

    if (this.#before !== undefined) {
      const { limit: prevLimit, speed: prevSpeed } = this.#before;
      this.#before = undefined;
      const raise = this.#limit / prevLimit;
      if (!s.saturated && speed <= prevSpeed) {
        // Demand fell while judging: the sample says nothing; keep the level, probe later.
        this.#hold("stable");
        return this.#limit;
      }
      if (speed <= prevSpeed * (1 + (raise - 1) * this.#minGainShare)) {
        // The raise did not pay: back to where we were, and probe more gently.
        this.#multiplier = 1 + (this.#multiplier - 1) / SLOWDOWN;
        if (this.#multiplier < MIN_MULTIPLIER) {
          this.#hold("stable");
          return this.#set(prevLimit, "stable");
        }
        return this.#set(prevLimit, "backing-off");
      }
    }
    if (!this.#seeking) {
      if (this.#limit >= this.max) return this.#limit;
      if (++this.#stableSamples < this.#reprobeAfter) return this.#limit;
      this.#seeking = true;
      this.#multiplier = 1 + (FIRST_MULTIPLIER - 1) / SLOWDOWN;
    }
    if (!s.saturated) return this.#limit; // more slots would not be used
    if (this.#limit >= this.max) {
      this.#hold("at-max");
      return this.#limit;
    }
    this.#before = { limit: this.#limit, speed };
    const next = Math.min(this.max, Math.max(this.#limit + 1, this.#limit * this.#multiplier));
    return this.#set(next, next >= this.max ? "at-max" : "seeking");
  }
}
