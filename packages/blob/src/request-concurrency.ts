/**
 * A worker's request concurrency: its RequestSlots and, in "auto" mode, the controller that moves
 * their limit. A sample is taken once it is at least `minSampleMs` old and has `minRequests`
 * finished requests (or is `maxSampleMs` old, or saw a throttled answer, which acts at once).
 */
import {
  CONCURRENCY_DEFAULTS,
  ConcurrencyController,
  type ConcurrencyReason,
} from "./concurrency-controller.js";
import { RequestSlots } from "./request-slots.js";

export interface RequestConcurrencyOptions {
  /** "auto" (default) adapts between 4 and `max`; a number fixes the level. */
  mode?: "auto" | number;
  /** Cap of the auto mode (--max-concurrency). Default 64. */
  max?: number;
  /** Check period. Default 500 ms. */
  tickMs?: number;
  /** Shortest sample. Default 2000 ms. */
  minSampleMs?: number;
  /** Longest sample. Default 10,000 ms. */
  maxSampleMs?: number;
  /** Finished requests a sample needs before maxSampleMs. Default 8. */
  minRequests?: number;
  /** Called when the level changes. */
  onChange?: ((limit: number, reason: ConcurrencyReason) => void) | undefined;
}

export class RequestConcurrency {
  readonly slots: RequestSlots;
  readonly mode: "auto" | "fixed";
  readonly #controller: ConcurrencyController | undefined;
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(options: RequestConcurrencyOptions = {}) {
    const mode = options.mode ?? "auto";
    if (mode === "auto") {
      this.mode = "auto";
      this.#controller = new ConcurrencyController({
        max: options.max ?? CONCURRENCY_DEFAULTS.max,
      });
      this.slots = new RequestSlots(this.#controller.limit);
      const minSampleMs = options.minSampleMs ?? 2000;
      const maxSampleMs = options.maxSampleMs ?? 10_000;
      const minRequests = options.minRequests ?? 8;
      const controller = this.#controller;
      this.#timer = setInterval(() => {
        const p = this.slots.peek();
        const due =
          p.throttled > 0 ||
          (p.elapsedMs >= minSampleMs && p.requests >= minRequests) ||
          p.elapsedMs >= maxSampleMs;
        if (!due) return;
        const before = controller.limit;
        const limit = controller.observe(this.slots.sample());
        if (limit !== before) {
          this.slots.setLimit(limit);
          options.onChange?.(limit, controller.reason);
        }
      }, options.tickMs ?? 500);
      this.#timer.unref();
    } else {
      this.mode = "fixed";
      this.slots = new RequestSlots(mode);
    }
  }

  /** Requests allowed in flight now. */
  get current(): number {
    return this.slots.limit;
  }

  get reason(): ConcurrencyReason {
    return this.#controller?.reason ?? "fixed";
  }

  /** The highest level it may use (the socket pool is sized to it). */
  get max(): number {
    return this.#controller?.max ?? this.slots.limit;
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
  }
}
