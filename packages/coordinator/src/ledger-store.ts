import { openLedgerBucket } from "@hsmfleet/bus";
import type { JetStreamManager, KV, NatsConnection } from "@hsmfleet/bus";
import { JobError } from "@hsmfleet/core";
import { LEDGER_BUCKET } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { LEDGER_DIGEST_BYTES, LEDGER_PAGES, ResultLedger, ledgerPageOf } from "./result-ledger.js";

/** Largest page written: NATS's default max_payload is 1 MiB (headers need some room). */
const MAX_PAGE_BYTES = 960 * 1024;
/** Ids one page can hold; the frontier holds 256 times as many (~15.7 million). */
const MAX_PAGE_IDS = Math.floor(MAX_PAGE_BYTES / LEDGER_DIGEST_BYTES);
/**
 * A KV value holds a group of adjacent pages, as few groups as keep each under this many ids
 * (64 KiB): a frontier of a few thousand ids is one value, not 256 (issue 22: 256 KV writes a
 * second were most of the coordinator's promoted garbage and a good part of its CPU). A frontier
 * too wide for that falls back to a value a page.
 */
const GROUP_TARGET_IDS = 4096;
/** Two slots: one the job record refers to, one being rewritten. */
const SLOTS = 2;

/**
 * What a slot's head says: the results sequence its values describe, their ids, the non-empty
 * groups (`pages`: the keys written) and how many groups the 256 pages were split into (absent:
 * 256, a value a page, the layout before groups).
 */
interface LedgerHead {
  resultsSeq: number;
  count: number;
  pages: number[];
  groups?: number | undefined;
}

interface SlotState {
  /** The results sequence of the slot's complete set (-1: none, or being rewritten). */
  seq: number;
  /** Pages changed since the slot's set was last written whole. */
  dirty: Set<number>;
  /** The groups the slot was last written in (0: none yet). */
  groups: number;
}

/**
 * How many groups (a power of two, 1–256) the pages of `ledger` go in: the fewest that keep every
 * group at most GROUP_TARGET_IDS ids, else 256.
 */
export const ledgerGroups = (pageSizes: readonly number[]): number => {
  for (let groups = 1; groups < LEDGER_PAGES; groups *= 2) {
    const width = LEDGER_PAGES / groups;
    let fits = true;
    for (let g = 0; g < groups && fits; g++) {
      let ids = 0;
      for (let n = g * width; n < (g + 1) * width; n++) ids += pageSizes[n] ?? 0;
      fits = ids <= GROUP_TARGET_IDS;
    }
    if (fits) return groups;
  }
  return LEDGER_PAGES;
};

const isGroupCount = (v: unknown): v is number =>
  typeof v === "number" &&
  Number.isSafeInteger(v) &&
  v >= 1 &&
  v <= LEDGER_PAGES &&
  (v & (v - 1)) === 0;

const allPages = () => new Set(Array.from({ length: LEDGER_PAGES }, (_, n) => n));

const isIndex = (v: unknown, below: number): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0 && v < below;

/**
 * The job's outstanding frontier (result-ledger.ts), saved in the KV bucket hsmfleet-ledger so
 * the job record stays small however wide the job gets: 16-byte digests of the ids, in 256 pages
 * by a digest's first byte, the pages in 1–256 groups of adjacent pages (as few as keep a value
 * under ~64 KiB: one for a frontier of a few thousand ids), a group under `<job>.<slot>.<group>`,
 * with `<job>.<slot>.head` saying which results sequence the slot describes, how many ids, the
 * number of groups and which are non-empty. A head without a number of groups (written before
 * groups) has 256: a value a page.
 *
 * Two slots make a resume exact: a checkpoint rewrites the slot the job record does NOT refer to
 * (only its groups with a page changed since that slot was last written, then its head), and
 * only then writes the record with the new results sequence. A coordinator killed in between leaves the other
 * slot whole, matching the record; a resume takes the slot whose head has the record's results
 * sequence. The ledger's state is a function of the results sequence (results are folded in
 * order), so equal sequences mean equal sets. The keys are deleted when the job ends.
 */
export class LedgerStore {
  readonly #kv: KV;
  readonly #jobId: string;
  readonly #slots: SlotState[] = Array.from({ length: SLOTS }, () => ({
    seq: -1,
    dirty: allPages(),
    groups: 0,
  }));
  /** The slot the job record refers to (undefined: the record still holds the ids itself). */
  #confirmed: number | undefined;
  /** The slot written last. */
  #pending: number | undefined;

  private constructor(kv: KV, jobId: string) {
    this.#kv = kv;
    this.#jobId = jobId;
  }

  /**
   * The store of a job and its ledger as of the record's results sequence: from the slot that
   * matches it, else from the ids in the record (a new job's roots, or a record written by a
   * version that kept them there).
   */
  static async open(nc: NatsConnection, status: JobStatus): Promise<[LedgerStore, ResultLedger]> {
    const jobId = status.spec.jobId;
    const store = new LedgerStore(await openLedgerBucket(nc), jobId);
    const counts = { published: status.published, completed: status.completed };
    const expected = status.published - status.completed;
    const heads = await Promise.all(Array.from({ length: SLOTS }, (_, s) => store.#readHead(s)));
    const slot = heads.findIndex((h) => h?.resultsSeq === status.resultsSeq);
    if (slot >= 0) {
      const head = heads[slot]!;
      const digests = await store.#readPages(slot, head);
      const ledger = ResultLedger.fromDigests(digests, counts);
      if (digests.length !== head.count || ledger.size !== expected)
        throw new JobError(
          jobId,
          `the saved outstanding work items of job ${jobId} (${LEDGER_BUCKET} slot ${slot}) hold ${digests.length} ids where its head says ${head.count} and its record ${expected} (published ${status.published}, completed ${status.completed}); it cannot be resumed (start it again)`,
        );
      store.#confirmed = store.#pending = slot;
      store.#slots[slot] = {
        seq: head.resultsSeq,
        dirty: new Set(),
        groups: head.groups ?? LEDGER_PAGES,
      };
      return [store, ledger];
    }
    if (status.outstanding.length === 0 && expected !== 0)
      throw new JobError(
        jobId,
        `job ${jobId} has ${expected} outstanding work items but no saved ids at results sequence ${status.resultsSeq}, neither in its record nor in the KV bucket ${LEDGER_BUCKET}: it was started by a coordinator that did not record them, or the ledger was lost; it cannot be resumed by this version (start it again)`,
      );
    return [store, new ResultLedger(status.outstanding, counts)];
  }

  /**
   * Saves the ledger as of `resultsSeq` into the slot the record does not refer to: the groups
   * with a page changed since that slot was last written (all of them when the number of groups
   * changed), then its head; `pages` says how many values were written. Write the record after it resolves
   * (and call recordWritten); a rejection leaves the slot the record refers to untouched.
   */
  async save(ledger: ResultLedger, resultsSeq: number): Promise<{ pages: number; bytes: number }> {
    for (const n of ledger.takeChanged()) for (const s of this.#slots) s.dirty.add(n);
    const slot = this.#confirmed === undefined ? 0 : (this.#confirmed + 1) % SLOTS;
    const state = this.#slots[slot]!;
    state.seq = -1;
    this.#pending = slot;
    // Encoded now: the ledger may change while the writes are under way.
    const sizes = Array.from({ length: LEDGER_PAGES }, (_, n) => ledger.page(n).size);
    for (let n = 0; n < LEDGER_PAGES; n++)
      if (sizes[n]! > MAX_PAGE_IDS)
        throw new JobError(
          this.#jobId,
          `job ${this.#jobId} has ${ledger.size} outstanding work items, more than its ledger can save (page ${n} holds ${sizes[n]} ids, at most ${MAX_PAGE_IDS}); run it as several smaller jobs`,
        );
    const groups = ledgerGroups(sizes);
    // Another split than the slot's last complete write: every group of it is rewritten (and
    // until this write completes, the slot's split is unknown: a failed one may have left keys of
    // either split).
    if (groups !== state.groups) state.dirty = allPages();
    state.groups = 0;
    const width = LEDGER_PAGES / groups;
    const pages: number[] = [];
    const writes: Array<[number, Uint8Array]> = [];
    for (let g = 0; g < groups; g++) {
      let ids = 0;
      let dirty = false;
      for (let n = g * width; n < (g + 1) * width; n++) {
        ids += sizes[n]!;
        dirty ||= state.dirty.has(n);
      }
      if (ids === 0) continue;
      pages.push(g);
      if (!dirty) continue;
      const value = Buffer.allocUnsafe(ids * LEDGER_DIGEST_BYTES);
      let at = 0;
      for (let n = g * width; n < (g + 1) * width; n++)
        for (const d of ledger.page(n)) at += value.write(d, at, "latin1");
      writes.push([g, value]);
    }
    const head: LedgerHead = { resultsSeq, count: ledger.size, pages, groups };
    const headBytes = Buffer.from(JSON.stringify(head));
    await Promise.all(writes.map(([n, bytes]) => this.#kv.put(this.#key(slot, n), bytes)));
    await this.#kv.put(this.#key(slot, "head"), headBytes);
    state.dirty.clear();
    state.groups = groups;
    state.seq = resultsSeq;
    return {
      pages: writes.length,
      bytes: writes.reduce((sum, [, b]) => sum + b.length, headBytes.length),
    };
  }

  /** The job record was written with `resultsSeq`: the slot saved at it is now the one it refers to. */
  recordWritten(resultsSeq: number): void {
    const p = this.#pending;
    if (p !== undefined && this.#slots[p]!.seq === resultsSeq) this.#confirmed = p;
  }

  /** Deletes every key of the job (when it has ended), leaving no markers behind. */
  async remove(jsm: JetStreamManager): Promise<void> {
    await jsm.streams.purge(`KV_${LEDGER_BUCKET}`, {
      filter: `$KV.${LEDGER_BUCKET}.${this.#jobId}.>`,
    });
  }

  #key(slot: number, page: number | "head"): string {
    return `${this.#jobId}.${slot}.${page}`;
  }

  async #readHead(slot: number): Promise<LedgerHead | undefined> {
    const entry = await this.#kv.get(this.#key(slot, "head"));
    if (!entry || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    let head: unknown;
    try {
      head = JSON.parse(Buffer.from(entry.value).toString("utf8"));
    } catch {
      head = undefined;
    }
    const h = head as Partial<LedgerHead> | undefined;
    if (
      typeof h !== "object" ||
      h === null ||
      !isIndex(h.resultsSeq, Number.MAX_SAFE_INTEGER) ||
      !isIndex(h.count, Number.MAX_SAFE_INTEGER) ||
      (h.groups !== undefined && !isGroupCount(h.groups)) ||
      !Array.isArray(h.pages) ||
      !h.pages.every((n) => isIndex(n, h.groups ?? LEDGER_PAGES)) ||
      new Set(h.pages).size !== h.pages.length
    )
      throw new JobError(
        this.#jobId,
        `the ledger head ${this.#key(slot, "head")} in the KV bucket ${LEDGER_BUCKET} is not valid; job ${this.#jobId} cannot be resumed (start it again)`,
      );
    return { resultsSeq: h.resultsSeq, count: h.count, pages: h.pages, groups: h.groups };
  }

  async #readPages(slot: number, head: LedgerHead): Promise<string[]> {
    const width = LEDGER_PAGES / (head.groups ?? LEDGER_PAGES);
    const pages = await Promise.all(
      head.pages.map(async (g) => {
        const key = this.#key(slot, g);
        const entry = await this.#kv.get(key);
        const value = entry?.operation === "PUT" ? entry.value : undefined;
        const bad = (why: string) =>
          new JobError(
            this.#jobId,
            `the ledger page ${key} in the KV bucket ${LEDGER_BUCKET} ${why}; job ${this.#jobId} cannot be resumed (start it again)`,
          );
        if (value === undefined || value.length === 0) throw bad("is missing");
        if (value.length % LEDGER_DIGEST_BYTES !== 0) throw bad("has a partial id");
        const text = Buffer.from(value).toString("latin1");
        const digests: string[] = [];
        for (let i = 0; i < text.length; i += LEDGER_DIGEST_BYTES) {
          const d = text.slice(i, i + LEDGER_DIGEST_BYTES);
          const n = ledgerPageOf(d);
          if (n < g * width || n >= (g + 1) * width) throw bad("holds an id of another page");
          digests.push(d);
        }
        return digests;
      }),
    );
    return pages.flat();
  }
}
