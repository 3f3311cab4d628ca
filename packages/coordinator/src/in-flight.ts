import { hasValidSeal } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import {
  addCounters,
  decodeJobProgress,
  emptyInFlightCounters,
  subjects,
} from "@hsmfleet/protocol";
import type { InFlightCounters } from "@hsmfleet/protocol";

/**
 * Item ids remembered as reported, so a progress message that arrives late does not bring one
 * back: the oldest is forgotten beyond this many (the coordinator's only per-item memory that
 * outlives an item; ~2.5 MB at the cap, reached after ~16M files at 1,000-file batches — the
 * only growth of its live heap between 1M and 10M files, issue 22).
 */
export const RECENTLY_DONE = 16_384;
/** Longest item id taken from a progress message (ids are hashes or `<id>.<n>`). */
const MAX_ITEM_ID = 256;

/**
 * The items of one job that workers run now and what each has done so far, from the workers'
 * JobProgress messages (core NATS, about once a second). An item leaves when its result is folded
 * into the job record (`itemDone`); until then its work is shown on top of the record's counters,
 * so progress moves with the bytes rather than with whole batches. Messages are untrusted: those
 * without the job's seal (its item key, like work items and results), other jobs' items, malformed
 * ones and over-long ids are ignored; a later attempt of an item replaces
 * an earlier one's figures.
 */
export class InFlightItems {
  readonly #jobId: string;
  readonly #items = new Map<string, { attempt: number; done: InFlightCounters }>();
  readonly #done = new Set<string>();
  readonly #sub;

  constructor(nc: NatsConnection, jobId: string, key: Uint8Array) {
    this.#jobId = jobId;
    this.#sub = nc.subscribe(subjects.progress(jobId), {
      callback: (err, msg) => {
        if (err || !hasValidSeal(key, msg)) return;
        try {
          this.add(decodeJobProgress(msg.data));
        } catch {
          // Not a JobProgress, or a counter out of range: ignored.
        }
      },
    });
  }

  /** Takes the figures of one progress message. */
  add(p: ReturnType<typeof decodeJobProgress>): void {
    if (p.jobId !== this.#jobId) return;
    for (const item of p.items) {
      if (item.itemId === "" || item.itemId.length > MAX_ITEM_ID) continue;
      if (this.#done.has(item.itemId)) continue;
      const current = this.#items.get(item.itemId);
      if (current && current.attempt > item.attempt) continue;
      this.#items.set(item.itemId, { attempt: item.attempt, done: item.done });
    }
  }

  /** The item's result was folded: its work is in the counters now. */
  itemDone(itemId: string): void {
    this.#items.delete(itemId);
    this.#done.add(itemId);
    if (this.#done.size > RECENTLY_DONE) {
      const oldest = this.#done.values().next().value;
      if (oldest !== undefined) this.#done.delete(oldest);
    }
  }

  /** Ids remembered as reported (at most RECENTLY_DONE): the bound's test seam. */
  get recentlyDone(): number {
    return this.#done.size;
  }

  /** Items in flight whose result has not been folded yet. */
  get size(): number {
    return this.#items.size;
  }

  /** The work of every item in flight, added up. */
  totals(): InFlightCounters {
    const sum = emptyInFlightCounters();
    for (const { done } of this.#items.values()) {
      sum.items += 1;
      addCounters(sum.export, done.export);
      addCounters(sum.import, done.import);
      addCounters(sum.restore, done.restore);
    }
    return sum;
  }

  stop(): void {
    this.#sub.unsubscribe();
  }
}
