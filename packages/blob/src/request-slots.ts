/**
 * A worker's request slots: how many data requests (Put Blob, Put Block, ranged GETs) it has in
 * flight at once, whatever file, chunk or job they belong to. The limit can change at any time (the
 * concurrency controller moves it); lowering it lets the requests in flight finish and holds the
 * next ones back. Each finished request reports its bytes and duration, each throttled answer
 * (429, 503) is counted: the controller reads and resets these as one sample.
 */
import { systemClock, type Clock } from "./token-bucket.js";

interface Waiter {
  grant: () => void;
}

/** What happened since the previous sample. */
export interface SlotSample {
  /** Milliseconds the sample covers. */
  elapsedMs: number;
  /** Data requests that finished (any outcome). */
  requests: number;
  /** Payload bytes of the requests that succeeded. */
  bytes: number;
  /** Sum of the finished requests' durations (from slot granted to body done). */
  latencyMsSum: number;
  /** Answers 429 or 503 (ServerBusy, throttling). */
  throttled: number;
  /** Whether some request waited for a slot: more slots could have been used. */
  saturated: boolean;
}

/** Hands back a slot; `bytes` = payload moved (0 for a failure). */
export type SlotRelease = (outcome: { bytes: number; ok: boolean }) => void;

const abortReason = (signal: AbortSignal): Error => {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error("The operation was aborted", { cause: reason });
  err.name = "AbortError";
  return err;
};

export class RequestSlots {
  #limit: number;
  #inUse = 0;
  readonly #queue: Waiter[] = [];
  readonly #clock: Clock;
  #sampleStart: number;
  #requests = 0;
  #bytes = 0;
  #latencyMsSum = 0;
  #throttled = 0;
  #saturated = false;
  /** Totals since creation. */
  #totalRequests = 0;
  #totalThrottled = 0;

  constructor(limit: number, clock: Clock = systemClock) {
    this.#limit = RequestSlots.#check(limit);
    this.#clock = clock;
    this.#sampleStart = clock.now();
  }

  static #check(limit: number): number {
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError(`request concurrency must be an integer ≥ 1, got ${limit}`);
    return limit;
  }

  get limit(): number {
    return this.#limit;
  }

  get inUse(): number {
    return this.#inUse;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  get totalRequests(): number {
    return this.#totalRequests;
  }

  get totalThrottled(): number {
    return this.#totalThrottled;
  }

  setLimit(limit: number): void {
    this.#limit = RequestSlots.#check(limit);
    this.#drain();
  }

  /** A slot now when one is free and nobody waits (no promise), else undefined: then acquire. */
  tryAcquire(signal?: AbortSignal): SlotRelease | undefined {
    if (signal?.aborted || this.#queue.length !== 0 || this.#inUse >= this.#limit) return undefined;
    this.#inUse++;
    return this.#releaser();
  }

  /** Waits for a slot; the returned function hands it back (call it exactly once). */
  async acquire(signal?: AbortSignal): Promise<SlotRelease> {
    if (signal?.aborted) throw abortReason(signal);
    if (this.#queue.length === 0 && this.#inUse < this.#limit) {
      this.#inUse++;
    } else {
      this.#saturated = true;
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(abortReason(signal!));
        };
        const waiter: Waiter = {
          grant: () => {
            signal?.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        signal?.addEventListener("abort", onAbort, { once: true });
        this.#queue.push(waiter);
      });
    }
    return this.#releaser();
  }

  /** The release of a slot just taken (its latency counted from now). */
  #releaser(): SlotRelease {
    const started = this.#clock.now();
    let released = false;
    return ({ bytes, ok }) => {
      if (released) return;
      released = true;
      this.#inUse--;
      this.#requests++;
      this.#totalRequests++;
      this.#latencyMsSum += this.#clock.now() - started;
      if (ok) this.#bytes += bytes;
      this.#drain();
    };
  }

  /** A 429 or 503 answer (the request itself still releases its slot). */
  throttled(): void {
    this.#throttled++;
    this.#totalThrottled++;
  }

  /** Returns what happened since the previous call and starts a new sample. */
  sample(): SlotSample {
    const now = this.#clock.now();
    const s: SlotSample = {
      elapsedMs: now - this.#sampleStart,
      requests: this.#requests,
      bytes: this.#bytes,
      latencyMsSum: this.#latencyMsSum,
      throttled: this.#throttled,
      saturated: this.#saturated || this.#queue.length > 0,
    };
    this.#sampleStart = now;
    this.#requests = 0;
    this.#bytes = 0;
    this.#latencyMsSum = 0;
    this.#throttled = 0;
    this.#saturated = false;
    return s;
  }

  /** The current sample so far: its age, finished requests and throttled answers. */
  peek(): { elapsedMs: number; requests: number; throttled: number } {
    return {
      elapsedMs: this.#clock.now() - this.#sampleStart,
      requests: this.#requests,
      throttled: this.#throttled,
    };
  }

  #drain(): void {
    while (this.#inUse < this.#limit) {
      const next = this.#queue.shift();
      if (next === undefined) return;
      this.#inUse++;
      next.grant();
    }
  }
}
