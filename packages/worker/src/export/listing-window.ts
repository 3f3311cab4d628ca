import { attributesFromMetadata, isFolderStub, isSymlinkBlob } from "@hsmfleet/core";
import type { BlobLevelEntry } from "@hsmfleet/blob";

/** What the blob at an entry's name says, for the incremental comparison. */
export interface ExistingBlob {
  size: number;
  mtimeSec: number | undefined;
  folder: boolean;
  symlink: boolean;
}

/**
 * Listing entries held by every window of this process: the largest window held since start
 * (or since `reset()`), and how many windows were loaded. Tests and benchmarks read it to check
 * that a huge directory's compare stays bounded.
 */
export const listingWindowStats = {
  peakEntries: 0,
  windows: 0,
  reset(): void {
    this.peakEntries = 0;
    this.windows = 0;
  },
};

/** Blobs held at once by one directory's compare unless the worker says otherwise. */
export const DEFAULT_LISTING_WINDOW_ENTRIES = 250_000; // WORKER_DEFAULTS.listingWindowEntries

const existingOf = (b: Extract<BlobLevelEntry, { kind: "blob" }>): ExistingBlob => {
  // Read the way import reads: every key spelling and time format core accepts.
  const folder = isFolderStub(b.metadata);
  const symlink = isSymlinkBlob(b.metadata);
  const kind = folder ? "directory" : symlink ? "symlink" : "file";
  return {
    size: b.size,
    mtimeSec: attributesFromMetadata(b.metadata, kind).mtimeSec,
    folder,
    symlink,
  };
};

/**
 * One directory level of the blob listing, held at most `limit` blobs at a time. The listing comes
 * sorted by name; a window holds the next `limit` blobs, i.e. the names in (lo, hi]. The walk reads
 * the directory once per window and compares only the entries whose names fall in it (`covers`),
 * so each entry is compared exactly once, against every blob that could have its name, and a
 * directory with fewer blobs than `limit` is read once, as before. Memory: `limit` blobs (~150 B
 * each) plus one listing page, however large the directory.
 *
 * Names are compared as JavaScript strings (UTF-16 code units); should the service order a name
 * differently (characters above U+FFFF against U+E000–U+FFFF), that entry is only ever seen as new
 * and uploaded again — never skipped wrongly.
 *
 * `T` is what is kept of each blob (`convert`): export keeps an ExistingBlob; verify keeps the
 * attributes it compares and whether an entry claimed the blob (its extra blobs are reported
 * window by window, from `entries()`).
 */
export class ListingWindow<T = ExistingBlob> {
  readonly #limit: number;
  readonly #convert: (b: Extract<BlobLevelEntry, { kind: "blob" }>) => T;
  readonly #blobs = new Map<string, T>();
  #listing: AsyncIterator<BlobLevelEntry> | undefined;
  /** The first blob of the next window, read to know whether there is one. */
  #pending: [string, T] | undefined;
  /** Names above this (exclusive); undefined: from the start. */
  #lo: string | undefined;
  /** Names up to this (inclusive) while more windows follow. */
  #hi: string | undefined;
  #more = false;

  constructor(
    limit: number,
    convert: (b: Extract<BlobLevelEntry, { kind: "blob" }>) => T = existingOf as never,
  ) {
    if (!Number.isSafeInteger(limit) || limit < 1)
      throw new RangeError(`listing window must hold at least 1 blob, got ${limit}`);
    this.#limit = limit;
    this.#convert = convert;
  }

  /** Starts a directory: drops what was held and loads the first window of `listing`. */
  async open(listing: AsyncIterable<BlobLevelEntry>): Promise<void> {
    await this.close();
    this.#listing = listing[Symbol.asyncIterator]();
    this.#lo = undefined;
    await this.#fill();
  }

  /** True while the whole listing fits one window: every entry is compared in this one pass. */
  get whole(): boolean {
    return this.#lo === undefined && !this.#more;
  }

  /** Whether `name` is compared in this window; undefined (an entry with no blob name): the first. */
  covers(name: string | undefined): boolean {
    if (name === undefined) return this.#lo === undefined;
    if (this.#lo !== undefined && name <= this.#lo) return false;
    return !this.#more || name <= this.#hi!;
  }

  get(name: string): T | undefined {
    return this.#blobs.get(name);
  }

  /** The blobs of this window, in listing order. */
  entries(): IterableIterator<[string, T]> {
    return this.#blobs.entries();
  }

  /** Drops the blobs of this window (already dealt with); the listing and its position stay. */
  clearWindow(): void {
    this.#blobs.clear();
  }

  /** Loads the next window; false when the last one was compared. */
  async next(): Promise<boolean> {
    if (!this.#more) return false;
    this.#lo = this.#hi;
    await this.#fill();
    return true;
  }

  /** Stops the listing (a directory given up on) and drops what is held. */
  async close(): Promise<void> {
    const listing = this.#listing;
    this.#listing = undefined;
    this.#pending = undefined;
    this.#blobs.clear();
    this.#more = false;
    await listing?.return?.();
  }

  async #read(): Promise<[string, T] | undefined> {
    for (;;) {
      const r = await this.#listing!.next();
      if (r.done === true) return undefined;
      if (r.value.kind === "blob") return [r.value.name, this.#convert(r.value)];
    }
  }

  async #fill(): Promise<void> {
    this.#blobs.clear();
    let last: string | undefined;
    let next = this.#pending ?? (await this.#read());
    this.#pending = undefined;
    while (next !== undefined) {
      this.#blobs.set(next[0], next[1]);
      last = next[0];
      if (this.#blobs.size >= this.#limit) {
        this.#pending = await this.#read();
        break;
      }
      next = await this.#read();
    }
    this.#more = this.#pending !== undefined;
    this.#hi = this.#more ? last : undefined;
    listingWindowStats.windows++;
    const held = this.#blobs.size + (this.#pending === undefined ? 0 : 1);
    if (held > listingWindowStats.peakEntries) listingWindowStats.peakEntries = held;
  }
}
