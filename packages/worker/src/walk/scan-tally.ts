import { EntryType, POLICY_HSM_STATES, hsmStateOfFlags } from "@hsmfleet/core";
import type { DirBatch } from "@hsmfleet/fs";
import { sizeBucket } from "@hsmfleet/protocol";
import type { ScanCounters } from "@hsmfleet/protocol";

/** The HSM "state" counted for files whose xattr was not read (policy walks: hsmSizes). */
export const HSM_STATE_UNREAD = "unread";

/** hsmStateOfFlags looks at these bits only (Exists, Dirty, Released, Archived, Lost). */
const STATE_BITS = 0x7f;
/** State names by index (every name hsmStateOfFlags gives); the last is HSM_STATE_UNREAD. */
const STATE_NAMES: readonly string[] = [...POLICY_HSM_STATES, HSM_STATE_UNREAD];
const UNREAD_INDEX = STATE_NAMES.length - 1;
/** (flags & STATE_BITS) -> index in STATE_NAMES, the same answer as hsmStateOfFlags. */
const STATE_INDEX: Uint8Array = Uint8Array.from({ length: STATE_BITS + 1 }, (_, flags) =>
  STATE_NAMES.indexOf(hsmStateOfFlags(flags)),
);
/** sizeBucket(size) reaches 64 for sizes up to 2^64. */
const BUCKETS = 65;

/** sizeBucket() of a non-negative integer size, without Math.log2 below 4 GiB (the same answer). */
const bucketOf = (size: number): number =>
  size <= 0 ? 0 : size < 0x1_0000_0000 ? 32 - Math.clz32(size) : sizeBucket(size);

/**
 * The scan's per-file counting in flat numbers (no string-keyed state map or array growth per
 * file): plain records of packed batches are added here and folded into a ScanCounters once, at
 * the end of a shard, with the same totals, histogram and HSM states as counting each entry
 * into the counters directly (countRecord in scan-visitor.ts).
 */
export class ScanTally {
  #files = 0;
  #bytes = 0;
  #symlinks = 0;
  #other = 0;
  readonly #buckets = new Float64Array(BUCKETS);
  readonly #states = new Float64Array(STATE_NAMES.length);
  /** State indexes in the order first seen (the counters' keys keep that order). */
  #stateOrder: number[] = [];

  /** Counts record `off` of `batch`: a regular file, symlink or other entry read without error. */
  add(batch: DirBatch, off: number): void {
    const type = batch.type(off);
    if (type === EntryType.File) {
      const size = batch.size(off);
      this.#files++;
      this.#bytes += size;
      this.#buckets[bucketOf(size)]!++;
      const s = batch.hsmUnread(off)
        ? UNREAD_INDEX
        : STATE_INDEX[batch.hsmFlags(off) & STATE_BITS]!;
      if (this.#states[s]!++ === 0) this.#stateOrder.push(s);
    } else if (type === EntryType.Symlink) this.#symlinks++;
    else if (type === EntryType.Directory) throw new Error("ScanTally counts no directories");
    else this.#other++;
  }

  /** Adds what was counted to `c` and starts again from zero. */
  foldInto(c: ScanCounters): void {
    c.files += this.#files;
    c.bytes += this.#bytes;
    c.symlinks += this.#symlinks;
    c.other += this.#other;
    for (let b = 0; b < BUCKETS; b++) {
      const n = this.#buckets[b]!;
      if (n === 0) continue;
      while (c.sizeHistogram.length <= b) c.sizeHistogram.push(0);
      c.sizeHistogram[b]! += n;
    }
    for (const s of this.#stateOrder) {
      const name = STATE_NAMES[s]!;
      c.hsmStates[name] = (c.hsmStates[name] ?? 0) + this.#states[s]!;
    }
    this.#files = this.#bytes = this.#symlinks = this.#other = 0;
    this.#buckets.fill(0);
    this.#states.fill(0);
    this.#stateOrder = [];
  }
}
