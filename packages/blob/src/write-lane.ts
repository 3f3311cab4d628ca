/**
 * One file's writes, one at a time: the positional writes of a download's ranges (range-write.ts)
 * go through the file's lane, so at most `width` threadpool jobs write to one file at once.
 *
 * A buffered write holds the inode's lock (i_rwsem) for its whole copy into the page cache, so
 * writes to one file never run side by side in the kernel anyway; 8 ranges of a file written
 * concurrently only made the other threads wait on the lock — spinning on it while its owner ran
 * (`rwsem_spin_on_owner`, `rwsem_down_write_slowpath` in the profile), which took the other CPU.
 * Measured on the 2-CPU VM (issue 17, docs/benchmarks.md "One writer per file"), 4 × 512 MiB
 * one-shot imports in alternating rounds: without the lane half the runs took 2.6–3.9 s with
 * 3.0–5.5 s of system time (the good ones 1.5–1.7 s, ~1.0 s); with it every run took 1.6–2.1 s
 * with 1.1–1.6 s. Two writers per file spiked as often as no limit.
 *
 * Writes to different files still run in parallel (one lane per file). The lane belongs to the
 * file, not to one download: the chunks of a large file (import-chunk.ts) are downloaded by
 * separate work items, several at once in one worker, each through its own descriptor, so
 * `fileWriteLane` finds the lane by the file's device and inode. HSMFLEET_WRITERS_PER_FILE (read
 * once; default 1, 0 = no limit, the writes as they come) sets the width.
 */
import type { FileHandle } from "node:fs/promises";

export class WriteLane {
  readonly #width: number;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  /** `width`: jobs that may run at once (0 or Infinity: no limit). */
  constructor(width: number = writersPerFile()) {
    this.#width = width > 0 ? width : Number.POSITIVE_INFINITY;
  }

  /** Runs `job` once fewer than `width` jobs of this lane run; its result, or its rejection. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#width) {
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else this.#running++;
    try {
      return await job();
    } finally {
      const next = this.#waiting.shift();
      if (next !== undefined)
        next(); // the slot passes to the next job, in arrival order
      else this.#running--;
    }
  }
}

let cachedWidth: number | undefined;

/** HSMFLEET_WRITERS_PER_FILE (read once): default 1; 0 = no limit. */
export const writersPerFile = (): number => {
  if (cachedWidth !== undefined) return cachedWidth;
  const v = process.env["HSMFLEET_WRITERS_PER_FILE"];
  const n = v === undefined || v === "" ? 1 : Number(v);
  cachedWidth = Number.isSafeInteger(n) && n >= 0 ? n : 1;
  return cachedWidth;
};

/** The lanes of the files being written in this process, by "dev:ino", with their users. */
const lanes = new Map<string, { lane: WriteLane; users: number }>();

/** A file's lane for one download; `release` once its writes are done (idempotent). */
export interface WriteLaneLease {
  readonly lane: WriteLane;
  release(): void;
}

/**
 * The lane of the file open as `fh`, shared with every other download in this process writing the
 * same file (same device and inode) until the last of them releases it. A file whose fstat fails
 * gets a lane of its own (the writes then find the descriptor's error themselves).
 */
export const fileWriteLane = async (fh: FileHandle): Promise<WriteLaneLease> => {
  let key: string;
  try {
    const st = await fh.stat({ bigint: true });
    key = `${st.dev}:${st.ino}`;
  } catch {
    return { lane: new WriteLane(), release: () => undefined };
  }
  let entry = lanes.get(key);
  if (entry === undefined) {
    entry = { lane: new WriteLane(), users: 0 };
    lanes.set(key, entry);
  }
  entry.users++;
  const held = entry;
  let released = false;
  return {
    lane: held.lane,
    release: () => {
      if (released) return;
      released = true;
      if (--held.users === 0 && lanes.get(key) === held) lanes.delete(key);
    },
  };
};

/** How many files have a lane now (for tests: every lease released leaves none). */
export const openWriteLanes = (): number => lanes.size;
