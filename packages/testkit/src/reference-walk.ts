/**
 * Independent single-process walk (readdir + lstat, never following symlinks) used to check the
 * distributed scan's totals.
 */
import type { Stats } from "node:fs";
import { lstat, readdir } from "node:fs/promises";

export interface ReferenceCounts {
  files: number;
  /** Including the root. */
  directories: number;
  symlinks: number;
  other: number;
  /** Sum of regular file sizes. */
  bytes: number;
  /** Entries that could not be lstat'ed plus directories that could not be read. */
  errors: number;
}

const LSTAT_BATCH = 64;
const DIR_CONCURRENCY = 8;
const SLASH = Buffer.from("/");

export async function referenceWalk(root: string): Promise<ReferenceCounts> {
  const counts: ReferenceCounts = {
    files: 0,
    directories: 0,
    symlinks: 0,
    other: 0,
    bytes: 0,
    errors: 0,
  };
  const pending: Buffer[] = [];

  const classify = (path: Buffer, stats: Stats): void => {
    if (stats.isFile()) {
      counts.files += 1;
      counts.bytes += stats.size;
    } else if (stats.isDirectory()) {
      counts.directories += 1;
      pending.push(path);
    } else if (stats.isSymbolicLink()) {
      counts.symlinks += 1;
    } else {
      counts.other += 1;
    }
  };

  const rootBuf = Buffer.from(root);
  try {
    classify(rootBuf, await lstat(rootBuf));
  } catch {
    counts.errors += 1;
    return counts;
  }

  const walkDir = async (dir: Buffer): Promise<void> => {
    let names: Buffer[];
    try {
      names = await readdir(dir, { encoding: "buffer" });
    } catch {
      counts.errors += 1;
      return;
    }
    for (let i = 0; i < names.length; i += LSTAT_BATCH) {
      const batch = names
        .slice(i, i + LSTAT_BATCH)
        .map((name) => Buffer.concat([dir, SLASH, name]));
      const results = await Promise.allSettled(batch.map((path) => lstat(path)));
      results.forEach((result, j) => {
        if (result.status === "fulfilled") classify(batch[j]!, result.value);
        else counts.errors += 1;
      });
    }
  };

  // A few directory workers share one queue; a worker that finds it empty exits once no other
  // worker can still add to it.
  let active = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const dir = pending.pop();
      if (dir === undefined) {
        if (active === 0) return;
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      active += 1;
      try {
        await walkDir(dir);
      } finally {
        active -= 1;
      }
    }
  };
  await Promise.all(Array.from({ length: DIR_CONCURRENCY }, worker));
  return counts;
}
