import { EntryType, POLICY_HSM_STATES, hsmStateOfFlags } from "@hsmfleet/core";
import { TALLY } from "@hsmfleet/fs";
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
/** sizeBucket() of a non-negative integer size, without Math.log2 below 4 GiB (the same answer). */
const bucketOf = (size: number): number =>
  size <= 0 ? 0 : size < 0x1_0000_0000 ? 32 - Math.clz32(size) : sizeBucket(size);

/**
 * The scan's per-file counting in flat numbers (no string-keyed state map or array growth per
 * file), in the layout of DirBatch.tally (TALLY): whole packed batches are counted by the native
 * reader's tallyBatch in one call (`addBatch`), single records here (`add`, for a shard an earlier
 * attempt partly covered); both are folded into a ScanCounters once, at the end of a shard, with
 * the same totals, histogram and HSM states as counting each entry into the counters directly
 * (countRecord in scan-visitor.ts).
 */
export class ScanTally {
  readonly #counts = new Float64Array(TALLY.length);
  /** Where tallyBatch writes the offsets of the records it left (grown as needed). */
  readonly #scratch = { others: new Uint32Array(1024) };

  /**
   * Counts every plain record of `batch` (a regular file, symlink or other entry read without
   * error) in one native call; the offsets of the others (directories, failed entries), in order.
   */
  addBatch(batch: DirBatch): Uint32Array {
    return batch.tally(this.#counts, this.#scratch);
  }

  /** Counts record `off` of `batch`: a regular file, symlink or other entry read without error. */
  add(batch: DirBatch, off: number): void {
    const c = this.#counts;
    const type = batch.type(off);
    if (type === EntryType.File) {
      const size = batch.size(off);
      c[TALLY.files]!++;
      c[TALLY.bytes]! += size;
      c[TALLY.buckets + Math.min(bucketOf(size), TALLY.bucketCount - 1)]!++;
      const slot = batch.hsmUnread(off)
        ? TALLY.unread
        : TALLY.flags + (batch.hsmFlags(off) & STATE_BITS);
      if (c[slot]!++ === 0) c[TALLY.order + c[TALLY.orderLength]!++] = slot;
    } else if (type === EntryType.Symlink) c[TALLY.symlinks]!++;
    else if (type === EntryType.Directory) throw new Error("ScanTally counts no directories");
    else c[TALLY.other]!++;
  }

  /** Adds what was counted to `c` and starts again from zero. */
  foldInto(c: ScanCounters): void {
    const t = this.#counts;
    c.files += t[TALLY.files]!;
    c.bytes += t[TALLY.bytes]!;
    c.symlinks += t[TALLY.symlinks]!;
    c.other += t[TALLY.other]!;
    for (let b = 0; b < TALLY.bucketCount; b++) {
      const n = t[TALLY.buckets + b]!;
      if (n === 0) continue;
      while (c.sizeHistogram.length <= b) c.sizeHistogram.push(0);
      c.sizeHistogram[b]! += n;
    }
    for (let i = 0; i < t[TALLY.orderLength]!; i++) {
      const slot = t[TALLY.order + i]!;
      const name =
        STATE_NAMES[slot === TALLY.unread ? UNREAD_INDEX : STATE_INDEX[slot - TALLY.flags]!]!;
      c.hsmStates[name] = (c.hsmStates[name] ?? 0) + t[slot]!;
    }
    t.fill(0);
  }
}
