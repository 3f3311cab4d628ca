/**
 * The worker's own top-K of one policy job, over every shard it evaluated: a file enters a
 * shard's candidate list only when it enters this heap, so a worker sends about K candidates per
 * job instead of K per shard (each shard's list used to hold nearly every eligible file).
 *
 * Exact: a file is left out only when this heap holds K *distinct* files that come strictly
 * before it (key, then path bytes), and then it cannot be in the run's top-K — whether or not
 * those files' shards have been reported yet. Distinct: a path offered again (a shard redelivered
 * to the same worker) is not counted twice. A redelivered shard may then send a different list
 * than the first attempt, but the files of the run's top-K in a shard are the first entries of
 * both lists (nobody filters them), so they sit in the same message part either way and the
 * deterministic part ids lose none of them.
 */
export class CandidateGate {
  readonly #k: number;
  /** Max-heap on (key, path): the worst kept file on top. */
  readonly #keys: number[] = [];
  readonly #paths: string[] = [];
  /** Paths (latin1: one char per byte, so string order is byte order) of the files kept. */
  readonly #members = new Set<string>();

  constructor(k: number) {
    if (!Number.isSafeInteger(k) || k < 0)
      throw new RangeError(`candidate gate size ${k} is not an integer >= 0`);
    this.#k = k;
  }

  get size(): number {
    return this.#keys.length;
  }

  /**
   * Whether a file with this key could be kept: false when K files with smaller keys are known
   * (then offer() would say false too), so the caller need not build the file's path.
   */
  mayKeep(key: number): boolean {
    return this.#k > 0 && (this.#keys.length < this.#k || key <= this.#keys[0]!);
  }

  /**
   * Offers a file (its ordering key and root-relative path bytes); true when it is among the K
   * best this worker has seen (kept), false when K distinct better files are known.
   */
  offer(key: number, path: Buffer): boolean {
    if (this.#k === 0) return false;
    const full = this.#keys.length >= this.#k;
    // The common case once the heap is full: a number comparison and no allocation.
    if (full && key > this.#keys[0]!) return false;
    const p = path.toString("latin1");
    if (this.#members.has(p)) return true;
    if (!full) {
      this.#keys.push(key);
      this.#paths.push(p);
      this.#members.add(p);
      this.#up(this.#keys.length - 1);
      return true;
    }
    if (!this.#before(key, p, 0)) return false;
    this.#members.delete(this.#paths[0]!);
    this.#keys[0] = key;
    this.#paths[0] = p;
    this.#members.add(p);
    this.#down(0);
    return true;
  }

  /** Whether the file at `path` is still kept (not pushed out by K better ones since). */
  holds(path: Buffer): boolean {
    return this.#members.has(path.toString("latin1"));
  }

  /** (key, p) comes strictly before the file at heap index i. */
  #before(key: number, p: string, i: number): boolean {
    const k = this.#keys[i]!;
    return key < k || (key === k && p < this.#paths[i]!);
  }

  #swap(a: number, b: number): void {
    const k = this.#keys;
    const p = this.#paths;
    [k[a], k[b]] = [k[b]!, k[a]!];
    [p[a], p[b]] = [p[b]!, p[a]!];
  }

  #up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(this.#keys[parent]!, this.#paths[parent]!, i)) break;
      this.#swap(parent, i);
      i = parent;
    }
  }

  #down(i: number): void {
    const n = this.#keys.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.#before(this.#keys[m]!, this.#paths[m]!, l)) m = l;
      if (r < n && this.#before(this.#keys[m]!, this.#paths[m]!, r)) m = r;
      if (m === i) return;
      this.#swap(m, i);
      i = m;
    }
  }
}
