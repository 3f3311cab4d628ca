import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";

interface ChunkState {
  count: number;
  /** Indexes of the chunks done, as a bitmap (base64). */
  done: string;
  /** The chunk item that saw the file complete first: its result counts the file. */
  finalizedBy?: string;
}

export interface ChunkCompletion {
  /** Every chunk of the file is done: the caller finalizes the file (idempotent work only). */
  allDone: boolean;
  /**
   * This item is the one that completed the file (also when it is a redelivery of that item):
   * its result counts the file once. Results carry deterministic ids, so a repeat is dropped.
   */
  counts: boolean;
}

const MAX_ATTEMPTS = 50;

/**
 * Which chunks of a large file are done, shared by every worker through a KV bucket (compare-and-
 * set on the entry's revision, so concurrent completions never lose a bit). Finalization (commit a
 * block list, check a whole-file MD5, set attributes) happens when a completion finds all bits
 * set; it must be idempotent because a redelivered chunk can find the file complete again.
 */
export class ChunkTracker {
  readonly #kv: KV;

  constructor(kv: KV) {
    this.#kv = kv;
  }

  /** KV key of one file of one job (the path is hashed: keys allow only a few characters). */
  static key(jobId: string, path: Buffer | string): string {
    return `${jobId}.${createHash("sha256").update(path).digest("hex").slice(0, 40)}`;
  }

  async complete(
    key: string,
    index: number,
    count: number,
    itemId: string,
  ): Promise<ChunkCompletion> {
    if (
      !Number.isInteger(count) ||
      count < 1 ||
      !Number.isInteger(index) ||
      index < 0 ||
      index >= count
    )
      throw new RangeError(`chunk ${index} of ${count} is not a chunk`);
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
      let all = true;
      for (let i = 0; i < count && all; i++)
        if ((bits[i >> 3]! & (1 << (i & 7))) === 0) all = false;
      if (all && state.finalizedBy === undefined) state.finalizedBy = itemId;
      const value = JSON.stringify(state);
      try {
        if (exists) await this.#kv.update(key, value, entry.revision);
        else await this.#kv.create(key, value);
      } catch {
        continue; // someone else wrote first: read again
      }
      return { allDone: all, counts: all && state.finalizedBy === itemId };
    }
    throw new Error(`could not record chunk ${index} of ${key}: too much contention`);
  }

  /** Drops a file's record (after the job ends). */
  async forget(key: string): Promise<void> {
    await this.#kv.purge(key);
  }
}
