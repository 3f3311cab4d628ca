import { createHash } from "node:crypto";
import type { ItemResult } from "@hsmfleet/protocol";

/** Why a result was not counted (it is logged and dropped). */
export type LedgerRefusal =
  "not-outstanding" | "inconsistent-children" | "duplicate-child" | "bad-child-id";

export type LedgerVerdict = { counted: true } | { counted: false; why: LedgerRefusal };

/** Longest work item id accepted from a result. */
const MAX_ID_CHARS = 512;
/** Children one result may announce (a spawn window holds 256; a shard's final result as many). */
export const MAX_CHILDREN_PER_RESULT = 4096;

/** Bytes of an id's digest: the ledger keeps and checkpoints digests, not the ids themselves. */
export const LEDGER_DIGEST_BYTES = 16;
/** Pages of the frontier (by a digest's first byte): a checkpoint rewrites only those changed. */
export const LEDGER_PAGES = 256;

/**
 * The compact form of a work item id in the ledger: the first 16 bytes of its SHA-256, as a
 * one-byte string (16 chars). Ids come from results (untrusted, up to 512 chars); 128 bits keep
 * an accidental collision out of reach for any frontier, and forging one needs the job's key.
 */
export const ledgerDigest = (id: string): string =>
  createHash("sha256").update(id).digest().toString("latin1", 0, LEDGER_DIGEST_BYTES);

/** The page a digest belongs to. */
export const ledgerPageOf = (digest: string): number => digest.charCodeAt(0);

/**
 * The job's termination rule by ids, not counts: the ids of work items published and not yet
 * reported (the outstanding frontier). The coordinator puts the root items in; each result of an
 * outstanding item takes its id out and puts in the ids of the children it announces (a spawn
 * notice only puts children in, for an outstanding parent). The job is over when the frontier is
 * empty. A result for any other id — forged, a duplicate beyond JetStream's window, another
 * job's — is refused and changes nothing, so extra results can never end a job early (issue 14,
 * item 6). Memory is the frontier only, as 16-byte digests in 256 pages; the pages changed since
 * the last checkpoint are saved to the ledger bucket (ledger-store.ts) at the same point as the
 * results sequence, so a restarted coordinator resumes.
 */
export class ResultLedger {
  readonly #pages: Array<Set<string>> = Array.from({ length: LEDGER_PAGES }, () => new Set());
  readonly #changed = new Set<number>();
  #size = 0;
  #published: number;
  #completed: number;

  /** A ledger of the ids `outstanding` (the roots a planner made, or a record of the old layout). */
  constructor(outstanding: Iterable<string>, counts: { published: number; completed: number }) {
    for (const id of outstanding) this.#add(ledgerDigest(id));
    this.#published = counts.published;
    this.#completed = counts.completed;
  }

  /** A ledger of saved digests (ledger-store.ts). */
  static fromDigests(
    digests: Iterable<string>,
    counts: { published: number; completed: number },
  ): ResultLedger {
    const ledger = new ResultLedger([], counts);
    for (const d of digests) ledger.#add(d);
    ledger.#changed.clear();
    return ledger;
  }

  /** Work items published so far (roots plus every child announced). */
  get published(): number {
    return this.#published;
  }

  /** Work items reported. */
  get completed(): number {
    return this.#completed;
  }

  /** Every published item has reported. */
  get done(): boolean {
    return this.#size === 0;
  }

  get size(): number {
    return this.#size;
  }

  /** Whether `id` is published and not yet reported. */
  has(id: string): boolean {
    return this.#hasDigest(ledgerDigest(id));
  }

  /** The digests of page `n` (read only). */
  page(n: number): ReadonlySet<string> {
    const page = this.#pages[n];
    if (page === undefined) throw new RangeError(`no ledger page ${n}`);
    return page;
  }

  /** Every digest of the frontier. */
  digests(): string[] {
    return this.#pages.flatMap((p) => [...p]);
  }

  /** The pages changed since the last call (the ledger store saves them). */
  takeChanged(): number[] {
    const changed = [...this.#changed];
    this.#changed.clear();
    return changed;
  }

  /** Records work items the coordinator itself publishes (the roots). */
  publish(ids: readonly string[]): void {
    for (const id of ids) {
      const d = ledgerDigest(id);
      if (this.#hasDigest(d)) continue;
      this.#add(d);
      this.#published++;
    }
  }

  /** Folds one result in, or says why not (nothing changes then). */
  accept(r: ItemResult): LedgerVerdict {
    const owner = ledgerDigest(r.kind === "spawn" ? r.parentId : r.itemId);
    if (!this.#hasDigest(owner)) return { counted: false, why: "not-outstanding" };
    const ids = r.childIds;
    if (ids.length !== r.children || ids.length > MAX_CHILDREN_PER_RESULT)
      return { counted: false, why: "inconsistent-children" };
    const fresh = new Set<string>();
    for (const id of ids) {
      if (id.length === 0 || id.length > MAX_ID_CHARS)
        return { counted: false, why: "bad-child-id" };
      const d = ledgerDigest(id);
      if (fresh.has(d) || this.#hasDigest(d) || d === owner)
        return { counted: false, why: "duplicate-child" };
      fresh.add(d);
    }
    if (r.kind !== "spawn") {
      this.#delete(owner);
      this.#completed++;
    }
    for (const d of fresh) this.#add(d);
    this.#published += fresh.size;
    return { counted: true };
  }

  #hasDigest(d: string): boolean {
    return this.#pages[ledgerPageOf(d)]!.has(d);
  }

  #add(d: string): void {
    const n = ledgerPageOf(d);
    const page = this.#pages[n]!;
    if (page.has(d)) return;
    page.add(d);
    this.#size++;
    this.#changed.add(n);
  }

  #delete(d: string): void {
    const n = ledgerPageOf(d);
    if (!this.#pages[n]!.delete(d)) return;
    this.#size--;
    this.#changed.add(n);
  }
}
