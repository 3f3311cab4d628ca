import type { SourceChange } from "./change-source.js";

/**
 * What the service does to one path, once coalesced:
 * - `upload`: data or a new entry (waits until the path has been quiet for the settle time);
 * - `meta`: attributes only (metadata updated in place);
 * - `delete`: the entry went away (kept for the remove delay first);
 * - `reconcile`: compare a directory with its blobs at its level.
 */
export type PendingKind = "upload" | "meta" | "delete" | "reconcile";

export interface PendingOp {
  kind: PendingKind;
  rel: Buffer;
  isDir: boolean;
  /** The oldest record merged into it: the checkpoint cannot pass it until it is applied. */
  firstIndex: bigint;
  /** The newest record's time (ms): settle counts from here. */
  lastMs: number;
}

export interface PendingMove {
  from: Buffer;
  to: Buffer;
  isDir: boolean;
  index: bigint;
}

/** A group of operations that may run at once: no two touch the same path (or its prefix). */
export interface Phase {
  ops: PendingOp[];
  moves: PendingMove[];
}

const SLASH = 0x2f;
const keyOf = (kind: PendingKind, rel: Buffer): string =>
  `${kind === "reconcile" ? "R" : "P"}${rel.toString("latin1")}`;
const isUnder = (rel: Buffer, dir: Buffer): boolean =>
  dir.length === 0 ||
  (rel.length > dir.length && rel[dir.length] === SLASH && rel.subarray(0, dir.length).equals(dir));
const overlaps = (a: Buffer, b: Buffer): boolean => a.equals(b) || isUnder(a, b) || isUnder(b, a);

/** Records that change nothing in the container (times of reads, HSM state, layouts, opens). */
const IGNORED = new Set(["ATIME", "HSM", "LYOUT", "OPEN"]);
const ATTRIBUTE = new Set(["SATTR", "CTIME", "XATTR"]);
const REMOVAL = new Set(["UNLNK", "RMDIR"]);

/**
 * Per-path coalescing before work is published, as Robinhood's changelog reader does: CLOSE,
 * MTIME and TRUNC after a CREAT collapse into one upload; SATTRs merge into one metadata update
 * (or into a pending upload, which writes the metadata anyway); UNLNK cancels a pending CREAT (and
 * RMDIR a pending MKDIR): the path only needs its blob removed; a rename is split into its two
 * halves: what was pending at the former path moves with the entry to the new one, and the
 * rename itself becomes a server-side move of the blob(s).
 */
export class Coalescer {
  readonly #pending = new Map<string, PendingOp>();
  #moves: PendingMove[] = [];

  get size(): number {
    return this.#pending.size + this.#moves.length;
  }

  add(change: SourceChange, nowMs: number): void {
    const type = change.record.type;
    const index = BigInt(change.record.index);
    if (change.ignore) return;
    if (change.reconcile) return this.#merge("reconcile", change.rel, true, index, nowMs);
    if (IGNORED.has(type)) return;
    if (type === "RENME" || type === "RNMTO") {
      if (change.from === undefined)
        return this.#merge("upload", change.rel, change.isDir, index, nowMs);
      return this.#rename(change.from, change.rel, change.isDir, index);
    }
    if (REMOVAL.has(type) || change.gone) {
      this.#pending.delete(keyOf("upload", change.rel));
      if (type === "RMDIR") this.#pending.delete(keyOf("reconcile", change.rel));
      return this.#merge("delete", change.rel, change.isDir || type === "RMDIR", index, nowMs);
    }
    if (ATTRIBUTE.has(type)) return this.#merge("meta", change.rel, change.isDir, index, nowMs);
    return this.#merge("upload", change.rel, change.isDir || type === "MKDIR", index, nowMs);
  }

  #merge(kind: PendingKind, rel: Buffer, isDir: boolean, index: bigint, nowMs: number): void {
    const key = keyOf(kind, rel);
    const old = this.#pending.get(key);
    if (old === undefined) {
      this.#pending.set(key, { kind, rel, isDir, firstIndex: index, lastMs: nowMs });
      return;
    }
    // An upload absorbs a metadata change; anything after a delete means the path is back.
    const merged: PendingKind =
      kind === "reconcile"
        ? "reconcile"
        : old.kind === "delete" || kind === "delete"
          ? kind
          : old.kind === "upload" || kind === "upload"
            ? "upload"
            : "meta";
    old.kind = merged;
    old.isDir = isDir || (merged !== "delete" && old.isDir);
    old.lastMs = nowMs;
    if (index < old.firstIndex) old.firstIndex = index;
  }

  #rename(from: Buffer, to: Buffer, isDir: boolean, index: bigint): void {
    // What was pending at (or under) the former path follows the entry.
    for (const [key, op] of [...this.#pending]) {
      const moved = op.rel.equals(from)
        ? to
        : isDir && isUnder(op.rel, from) && from.length > 0
          ? Buffer.concat([to, op.rel.subarray(from.length)])
          : undefined;
      if (moved === undefined || op.kind === "delete") continue;
      this.#pending.delete(key);
      const target = keyOf(op.kind, moved);
      const there = this.#pending.get(target);
      if (there === undefined) this.#pending.set(target, { ...op, rel: moved });
      else if (op.firstIndex < there.firstIndex) there.firstIndex = op.firstIndex;
    }
    // The new name is an entry again: a delete waiting there is void.
    const del = this.#pending.get(keyOf("delete", to));
    if (del?.kind === "delete") this.#pending.delete(keyOf("delete", to));
    this.#moves.push({ from, to, isDir, index });
  }

  /** Whether a rename is waiting (it goes out alone, after everything handed out before it). */
  get movesPending(): boolean {
    return this.#moves.length > 0;
  }

  /** The oldest record not yet handed out, or undefined when nothing is pending. */
  oldestIndex(): bigint | undefined {
    let min: bigint | undefined;
    for (const op of this.#pending.values())
      if (min === undefined || op.firstIndex < min) min = op.firstIndex;
    for (const m of this.#moves) if (min === undefined || m.index < min) min = m.index;
    return min;
  }

  /**
   * The next phase to apply, taken out of the pending set: pending renames first, in order (a
   * directory rename alone, file renames together while they touch distinct paths), else every
   * operation that is ready (uploads quiet for `settleMs`, the rest at once, none whose path
   * `busy` says is still being applied), at most `max`. Undefined when nothing is ready.
   */
  takePhase(
    nowMs: number,
    settleMs: number,
    max: number,
    busy?: (rel: Buffer) => boolean,
  ): Phase | undefined {
    if (this.#moves.length > 0) {
      const moves: PendingMove[] = [];
      for (const m of this.#moves) {
        if (moves.length >= max) break;
        if (
          moves.some(
            (o) =>
              o.isDir ||
              m.isDir ||
              overlaps(o.from, m.from) ||
              overlaps(o.to, m.to) ||
              overlaps(o.from, m.to) ||
              overlaps(o.to, m.from),
          )
        )
          break;
        moves.push(m);
      }
      this.#moves = this.#moves.slice(moves.length);
      return { ops: [], moves };
    }
    const ops: PendingOp[] = [];
    for (const [key, op] of this.#pending) {
      if (ops.length >= max) break;
      if (op.kind === "upload" && !op.isDir && nowMs - op.lastMs < settleMs) continue;
      // A path whose previous operation is still being applied waits for it (order per path).
      if (busy?.(op.rel) === true) continue;
      ops.push(op);
      this.#pending.delete(key);
    }
    return ops.length > 0 ? { ops, moves: [] } : undefined;
  }

  /** The earliest time (ms) an upload waiting to settle becomes ready; undefined if none waits. */
  nextSettleMs(settleMs: number): number | undefined {
    let next: number | undefined;
    for (const op of this.#pending.values()) {
      if (op.kind !== "upload" || op.isDir) continue;
      const at = op.lastMs + settleMs;
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  /** Puts a path back to be uploaded (its file changed while it was read). */
  requeue(rel: Buffer, index: bigint, nowMs: number): void {
    this.#merge("upload", rel, false, index, nowMs);
  }
}
