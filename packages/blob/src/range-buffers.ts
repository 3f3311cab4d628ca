import { allocLargeBuffer } from "@hsmfleet/fs";

/**
 * Range buffers kept for the next download of the process. A large file is downloaded as chunks
 * (one downloadRangeChecked each, several at once); each used to allocate its own range buffers,
 * so a 2 GiB import faulted in 256 MiB of fresh memory — one page fault and one page cleared per
 * 4 KiB, on the event loop, inside the socket read that first touches the page — and V8 counted
 * every buffer as new external memory (more major GCs). Measured (issue 17, docs/benchmarks.md
 * "Large files: range buffers kept"): ~86,000 minor faults per 4 × 512 MiB import against rclone's
 * ~4,400.
 *
 * Buffers are cut from slabs of `slabBytes` (64 ranges of 4 MiB in one allocation): V8 checks
 * its external memory at every allocation, and 64 separate 4 MiB allocations at the start of a
 * download made it run ~13 scavenges and 2–3 mark-compacts ("external memory pressure",
 * --trace-gc) in the first 100 ms of the transfer; slabs of 64 MiB still ~6 and 2. The pages of a
 * slice not used yet are never touched (address space only, no memory). Slabs are on transparent
 * huge pages (`allocLargeBuffer`): the first touch of a 4 MiB range is 2 page faults, not 1,024
 * (issue 17, docs/benchmarks.md "Large files: range buffers on huge pages").
 *
 * Only buffers whose range finished cleanly come back (`release`): a buffer of a range that failed
 * is left to the garbage collector, so no socket read or write job of a failed try can touch a
 * buffer another download holds. Buffers are kept by length (the common range sizes, 4 and 8 MiB),
 * at most `maxBytes` in all (cut slices waiting for their first use count too), and dropped after
 * `idleMs` without a `take` or `release`, so an idle worker does not hold them (a slab is freed
 * once none of its slices is referenced).
 */

export interface RangeBufferPoolOptions {
  /**
   * Bytes of free buffers kept at most. Default 256 MiB (64 ranges of 4 MiB; the process's pool:
   * HSMFLEET_RANGE_BUFFER_POOL_BYTES, read once, 0 keeps none).
   */
  maxBytes?: number;
  /** Free buffers are dropped after this long without use. Default 5,000 ms. */
  idleMs?: number;
  /** Bytes allocated at once, cut into buffers of the length asked for. Default 256 MiB. */
  slabBytes?: number;
}

export const RANGE_BUFFER_POOL_DEFAULTS = {
  maxBytes: 256 * 1024 * 1024,
  idleMs: 5_000,
  slabBytes: 256 * 1024 * 1024,
} as const;

export class RangeBufferPool {
  readonly maxBytes: number;
  readonly #idleMs: number;
  readonly #slabBytes: number;
  readonly #free = new Map<number, Buffer[]>();
  #freeBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Buffers handed out that came from the pool (for tests and measurements). */
  reused = 0;

  constructor(options: RangeBufferPoolOptions = {}) {
    this.maxBytes = options.maxBytes ?? RANGE_BUFFER_POOL_DEFAULTS.maxBytes;
    this.#idleMs = options.idleMs ?? RANGE_BUFFER_POOL_DEFAULTS.idleMs;
    this.#slabBytes = options.slabBytes ?? RANGE_BUFFER_POOL_DEFAULTS.slabBytes;
    if (!Number.isSafeInteger(this.maxBytes) || this.maxBytes < 0)
      throw new RangeError(`range buffer pool size must be an integer ≥ 0, got ${this.maxBytes}`);
    if (!Number.isSafeInteger(this.#idleMs) || this.#idleMs < 1)
      throw new RangeError(`range buffer idle time must be an integer ≥ 1, got ${this.#idleMs}`);
    if (!Number.isSafeInteger(this.#slabBytes) || this.#slabBytes < 0)
      throw new RangeError(`range buffer slab size must be an integer ≥ 0, got ${this.#slabBytes}`);
  }

  /** Bytes of free buffers held. */
  get freeBytes(): number {
    return this.#freeBytes;
  }

  /**
   * A buffer of exactly `n` bytes (contents undefined): a kept one if there is one, else one cut
   * from a new slab (whose other slices are kept while they fit under maxBytes).
   */
  take(n: number): Buffer {
    const list = this.#free.get(n);
    const buf = list?.pop();
    if (buf !== undefined) {
      this.#freeBytes -= n;
      this.reused++;
      this.#touch();
      return buf;
    }
    const slices = Math.min(
      Math.floor(this.#slabBytes / n),
      Math.floor((this.maxBytes - this.#freeBytes) / n) + 1,
    );
    if (slices <= 1) return allocLargeBuffer(n);
    const slab = allocLargeBuffer(slices * n);
    for (let i = slices - 1; i >= 1; i--) this.#keep(slab.subarray(i * n, (i + 1) * n));
    this.#touch();
    return slab.subarray(0, n);
  }

  /**
   * Hands back a buffer no one reads or writes any more (a range that finished cleanly): one this
   * pool handed out (`take`), whole.
   */
  release(buf: Buffer): void {
    const n = buf.length;
    if (n === 0 || this.#freeBytes + n > this.maxBytes) return;
    this.#keep(buf);
    this.#touch();
  }

  #keep(buf: Buffer): void {
    const n = buf.length;
    let list = this.#free.get(n);
    if (list === undefined) this.#free.set(n, (list = []));
    list.push(buf);
    this.#freeBytes += n;
  }

  /** Drops every free buffer. */
  clear(): void {
    this.#free.clear();
    this.#freeBytes = 0;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #touch(): void {
    if (this.#freeBytes === 0) return;
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#free.clear();
        this.#freeBytes = 0;
      }, this.#idleMs);
      this.#timer.unref();
    } else this.#timer.refresh();
  }
}

/** HSMFLEET_RANGE_BUFFER_POOL_BYTES (for measurements; 0 keeps none), else the default. */
const processPoolBytes = (): number => {
  const v = process.env["HSMFLEET_RANGE_BUFFER_POOL_BYTES"];
  const n = v === undefined || v === "" ? Number.NaN : Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : RANGE_BUFFER_POOL_DEFAULTS.maxBytes;
};

/** The process's pool, shared by every download (download.ts). */
export const processRangeBuffers = new RangeBufferPool({ maxBytes: processPoolBytes() });
