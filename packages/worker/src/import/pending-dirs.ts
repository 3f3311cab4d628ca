import type { PosixAttributes } from "@hsmfleet/core";
import { importLevelStats } from "./import-level-stats.js";

/** What one listing level says of a subdirectory: its folder stub, and whether it has a prefix. */
export interface PendingDir {
  stub?: PosixAttributes;
  stubModified?: Date;
  hasPrefix: boolean;
}

/**
 * The subdirectories of one listing level (delimiter '/') that the listing has named but not yet
 * passed. A subdirectory "d" shows up as a folder stub blob "d", a prefix "d/", or both; the
 * listing is in name order, so once it yields a name after "d/" nothing more about "d" can come,
 * and "d" is handed on. Between "d" and "d/" sort only names "d" + a character below '/' ("d-x",
 * "d.y"), so a level holds a handful of names however many subdirectories it has (issue 22: a
 * directory of millions of subdirectories), instead of all of them until the level ends.
 *
 * Held in a binary heap by "d/" (the place where "d" is passed), so subdirectories are handed on
 * in that order, a deterministic one (a redelivered shard groups its children the same way).
 * Names are compared as JavaScript strings (UTF-16 code units): the same as the service's UTF-8
 * byte order except between a character above U+FFFF and one in U+E000–U+FFFF.
 */
export class PendingDirs {
  readonly #byName = new Map<string, PendingDir>();
  /** Heap of [place, name], smallest place first. */
  readonly #heap: Array<[string, string]> = [];

  /** The subdirectory `name`'s record, added when the listing names it first. */
  get(name: string): PendingDir {
    let d = this.#byName.get(name);
    if (d === undefined) {
      d = { hasPrefix: false };
      this.#byName.set(name, d);
      this.#push([`${name}/`, name]);
      importLevelStats.held(this.#byName.size);
    }
    return d;
  }

  get size(): number {
    return this.#byName.size;
  }

  /**
   * Takes out the subdirectories the listing has passed once it yields `position` (a blob name or a
   * prefix, with its '/'): those whose "name/" sorts at or before it. Every one of them, in order.
   */
  passed(position: string): Array<[string, PendingDir]> {
    const out: Array<[string, PendingDir]> = [];
    while (this.#heap.length > 0 && this.#heap[0]![0] <= position) out.push(this.#pop());
    return out;
  }

  /** Takes out what is left (the level's listing has ended), in order. */
  drain(): Array<[string, PendingDir]> {
    const out: Array<[string, PendingDir]> = [];
    while (this.#heap.length > 0) out.push(this.#pop());
    return out;
  }

  #pop(): [string, PendingDir] {
    const heap = this.#heap;
    const [, name] = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && heap[l]![0] < heap[m]![0]) m = l;
        if (r < heap.length && heap[r]![0] < heap[m]![0]) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    const d = this.#byName.get(name)!;
    this.#byName.delete(name);
    return [name, d];
  }

  #push(item: [string, string]): void {
    const heap = this.#heap;
    heap.push(item);
    for (let i = heap.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (heap[p]![0] <= heap[i]![0]) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  }
}
