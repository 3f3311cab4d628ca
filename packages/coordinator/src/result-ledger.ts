import type { ItemResult } from "@hsmfleet/protocol";

/** Why a result was not counted (it is logged and dropped). */
export type LedgerRefusal =
  "not-outstanding" | "inconsistent-children" | "duplicate-child" | "bad-child-id";

export type LedgerVerdict = { counted: true } | { counted: false; why: LedgerRefusal };

/** Longest work item id accepted from a result. */
const MAX_ID_CHARS = 512;
/** Children one result may announce (a spawn window holds 256; a shard's final result as many). */
export const MAX_CHILDREN_PER_RESULT = 4096;

/**
 * The job's termination rule by ids, not counts: the ids of work items published and not yet
 * reported (the outstanding frontier). The coordinator puts the root items in; each result of an
 * outstanding item takes its id out and puts in the ids of the children it announces (a spawn
 * notice only puts children in, for an outstanding parent). The job is over when the frontier is
 * empty. A result for any other id — forged, a duplicate beyond JetStream's window, another
 * job's — is refused and changes nothing, so extra results can never end a job early (issue 14,
 * item 6). Memory is the frontier only; it is checkpointed in the job record (JobStatus
 * .outstanding) at the same point as the results sequence, so a restarted coordinator resumes.
 */
export class ResultLedger {
  readonly #outstanding: Set<string>;
  #published: number;
  #completed: number;

  constructor(outstanding: Iterable<string>, counts: { published: number; completed: number }) {
    this.#outstanding = new Set(outstanding);
    this.#published = counts.published;
    this.#completed = counts.completed;
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
    return this.#outstanding.size === 0;
  }

  get size(): number {
    return this.#outstanding.size;
  }

  /** The frontier, for the job record's checkpoint. */
  outstanding(): string[] {
    return [...this.#outstanding];
  }

  /** Whether `id` is published and not yet reported. */
  has(id: string): boolean {
    return this.#outstanding.has(id);
  }

  /** Records work items the coordinator itself publishes (the roots). */
  publish(ids: readonly string[]): void {
    for (const id of ids) {
      if (this.#outstanding.has(id)) continue;
      this.#outstanding.add(id);
      this.#published++;
    }
  }

  /** Folds one result in, or says why not (nothing changes then). */
  accept(r: ItemResult): LedgerVerdict {
    const owner = r.kind === "spawn" ? r.parentId : r.itemId;
    if (!this.#outstanding.has(owner)) return { counted: false, why: "not-outstanding" };
    const ids = r.childIds;
    if (ids.length !== r.children || ids.length > MAX_CHILDREN_PER_RESULT)
      return { counted: false, why: "inconsistent-children" };
    const fresh = new Set<string>();
    for (const id of ids) {
      if (id.length === 0 || id.length > MAX_ID_CHARS)
        return { counted: false, why: "bad-child-id" };
      if (fresh.has(id) || this.#outstanding.has(id) || id === owner)
        return { counted: false, why: "duplicate-child" };
      fresh.add(id);
    }
    if (r.kind !== "spawn") {
      this.#outstanding.delete(owner);
      this.#completed++;
    }
    for (const id of fresh) this.#outstanding.add(id);
    this.#published += fresh.size;
    return { counted: true };
  }
}
