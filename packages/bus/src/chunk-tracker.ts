import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import { isRetryableJetStreamError, withJetStreamRetry } from "./jetstream-retry.js";
import type { JetStreamRetryOptions } from "./jetstream-retry.js";

interface ChunkState {
  count: number;
  /** Indexes of the chunks done, as a bitmap (base64). */
  done: string;
  /** The chunk item that saw the file complete first: its result counts the file. */
  finalizedBy?: string;
  /**
   * Indexes of the chunks whose every byte was checked as downloaded (against the service's range
   * CRC64s), as a bitmap (base64). Absent in records written before it existed: none.
   */
  verified?: string;
}

export interface ChunkCompletion {
  /** Every chunk of the file is done: the caller finalizes the file (idempotent work only). */
  allDone: boolean;
  /**
   * This item is the one that completed the file (also when it is a redelivery of that item):
   * its result counts the file once. Results carry deterministic ids, so a repeat is dropped.
   */
  counts: boolean;
  /**
   * Every chunk was recorded as checked as it was downloaded (`verified`): no whole-file check is
   * needed at finalization.
   */
  allVerified: boolean;
}

const MAX_ATTEMPTS = 50;

/**
 * The chunk record could not be read or written within the retry deadline (the NATS server or the
 * KV's stream did not answer). Retryable: the chunk item is handed back, and its next delivery
 * records the same bit (setting it is idempotent).
 */
export class ChunkTrackerUnavailableError extends DependencyError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, retryable: true });
    this.name = "ChunkTrackerUnavailableError";
  }
}

/**
 * Which chunks of a large file are done, shared by every worker through a KV bucket (compare-and-
 * set on the entry's revision, so concurrent completions never lose a bit). Finalization (commit a
 * block list, check a whole-file MD5, set attributes) happens when a completion finds all bits
 * set; it must be idempotent because a redelivered chunk can find the file complete again.
 */
export class ChunkTracker {
  readonly #kv: KV;
  readonly #retry: JetStreamRetryOptions;

  /**
   * `retry`: how long a completion keeps trying while the KV does not answer — a nats-server
   * restart, a stream without a leader (timeouts, no responders, 503). Default: 60 s in total, 250 ms
   * doubling to 4 s between tries (JETSTREAM_RETRY_DEFAULTS).
   */
  constructor(kv: KV, retry: JetStreamRetryOptions = {}) {
    this.#kv = kv;
    this.#retry = retry;
  }

  /** KV key of one file of one job (the path is hashed: keys allow only a few characters). */
  static key(jobId: string, path: Buffer | string): string {
    return `${jobId}.${createHash("sha256").update(path).digest("hex").slice(0, 40)}`;
  }

  /**
   * Records chunk `index` of `count` as done by item `itemId`; `verified`: every byte of this
   * chunk was checked as it was downloaded (default false; a redelivery records it again).
   */
  async complete(
    key: string,
    index: number,
    count: number,
    itemId: string,
    verified = false,
  ): Promise<ChunkCompletion> {
    if (
      !Number.isInteger(count) ||
      count < 1 ||
      !Number.isInteger(index) ||
      index < 0 ||
      index >= count
    )
      throw new RangeError(`chunk ${index} of ${count} is not a chunk`);
    // The whole read-modify-write is repeated while the KV does not answer: a write whose answer
    // was lost may have landed, and the next read shows it (setting a bit twice is harmless, and
    // `finalizedBy` keeps the first item that saw the file complete).
    try {
      return await withJetStreamRetry(
        `record chunk ${index} of ${count} in the chunk tracker (${key})`,
        () => this.#completeOnce(key, index, count, itemId, verified),
        this.#retry,
      );
    } catch (err) {
      if (err instanceof DependencyError || isRetryableJetStreamError(err)) {
        throw new ChunkTrackerUnavailableError(errorMessage(err), { cause: err });
      }
      throw err;
    }
  }

  async #completeOnce(
    key: string,
    index: number,
    count: number,
    itemId: string,
    verified: boolean,
  ): Promise<ChunkCompletion> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const entry = await this.#kv.get(key);
      const exists = entry !== null && entry.operation === "PUT" && entry.value.length > 0;
      const state: ChunkState = exists
        ? (JSON.parse(new TextDecoder().decode(entry.value)) as ChunkState)
        : { count, done: Buffer.alloc(Math.ceil(count / 8)).toString("base64") };
      if (state.count !== count)
        throw new RangeError(`file ${key} was split into ${state.count} chunks, not ${count}`);
      const bits = Buffer.from(state.done, "base64");
      bits[index >> 3]! |= 1 << (index & 7);
      state.done = bits.toString("base64");
      const checked =
        state.verified !== undefined
          ? Buffer.from(state.verified, "base64")
          : Buffer.alloc(Math.ceil(count / 8));
      if (verified) checked[index >> 3]! |= 1 << (index & 7);
      else checked[index >> 3]! &= ~(1 << (index & 7));
      state.verified = checked.toString("base64");
      let all = true;
      let allVerified = true;
      for (let i = 0; i < count && all; i++) {
        if ((bits[i >> 3]! & (1 << (i & 7))) === 0) all = false;
        if (((checked[i >> 3] ?? 0) & (1 << (i & 7))) === 0) allVerified = false;
      }
      if (all && state.finalizedBy === undefined) state.finalizedBy = itemId;
      const value = JSON.stringify(state);
      try {
        if (exists) await this.#kv.update(key, value, entry.revision);
        else await this.#kv.create(key, value);
      } catch (err) {
        // Not answered (the server is away): retried from the read by the caller's backoff.
        if (isRetryableJetStreamError(err)) throw err;
        continue; // someone else wrote first: read again
      }
      return {
        allDone: all,
        counts: all && state.finalizedBy === itemId,
        allVerified: all && allVerified,
      };
    }
    throw new Error(`could not record chunk ${index} of ${key}: too much contention`);
  }

  /** Drops a file's record (after the job ends). */
  async forget(key: string): Promise<void> {
    await this.#kv.purge(key);
  }
}
