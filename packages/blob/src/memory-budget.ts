/** Default limit of a worker's upload buffers. */
export const DEFAULT_MEMORY_BUDGET_BYTES = 512 * 1024 * 1024;

interface Waiter {
  n: number;
  grant: () => void;
}

const abortReason = (signal: AbortSignal): Error => {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  const err = new Error("The operation was aborted", { cause: reason });
  err.name = "AbortError";
  return err;
};

/**
 * A byte semaphore shared by a worker's uploads. acquire(n) waits until n more bytes fit under the
 * limit; a single request larger than the limit is granted when nothing else is in use. Waiters
 * are served first come, first served, so a large request is not starved by small ones.
 */
export class MemoryBudget {
  readonly limitBytes: number;
  #inUse = 0;
  #peak = 0;
  readonly #queue: Waiter[] = [];

  constructor(limitBytes: number = DEFAULT_MEMORY_BUDGET_BYTES) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) {
      throw new RangeError(`memory budget must be a positive number of bytes, got ${limitBytes}`);
    }
    this.limitBytes = limitBytes;
  }

  /** Bytes currently granted. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Highest inUse seen so far (for tests and metrics). */
  get peak(): number {
    return this.#peak;
  }

  /** Requests waiting for memory. */
  get waiting(): number {
    return this.#queue.length;
  }

  #fits(n: number): boolean {
    return this.#inUse + n <= this.limitBytes || this.#inUse === 0;
  }

  #take(n: number): void {
    this.#inUse += n;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
  }

  /**
   * Takes `n` bytes now when acquire would grant them at once (nobody waiting, they fit) and says
   * so; false leaves everything as it was (then acquire waits in line). Saves a promise per small
   * file when memory is free.
   */
  tryAcquire(n: number): boolean {
    if (!Number.isSafeInteger(n) || n <= 0) return false;
    if (this.#queue.length !== 0 || !this.#fits(n)) return false;
    this.#take(n);
    return true;
  }

  /** Resolves once `n` bytes are granted; rejects with the signal's reason when it aborts first. */
  acquire(n: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isSafeInteger(n) || n < 0) {
      return Promise.reject(new RangeError(`cannot acquire ${n} bytes`));
    }
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (n === 0) return Promise.resolve();
    if (this.#queue.length === 0 && this.#fits(n)) {
      this.#take(n);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(abortReason(signal!));
        // The head may have changed: the next waiter may fit now.
        this.#drain();
      };
      const waiter: Waiter = {
        n,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Returns `n` bytes granted earlier. */
  release(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.#inUse) {
      throw new RangeError(`cannot release ${n} bytes with ${this.#inUse} in use`);
    }
    this.#inUse -= n;
    this.#drain();
  }

  #drain(): void {
    for (;;) {
      const head = this.#queue[0];
      if (head === undefined || !this.#fits(head.n)) return;
      this.#queue.shift();
      this.#take(head.n);
      head.grant();
    }
  }
}
