import { createHash } from "node:crypto";
import type { ScanCounters } from "./counters.js";
import type { WalkShard } from "./messages.js";

/** Histogram bucket of a file size: 0 for empty files, else floor(log2(size)) + 1. */
export const sizeBucket = (size: number): number =>
  size <= 0 ? 0 : Math.floor(Math.log2(size)) + 1;

/** Human label of a bucket, e.g. "[4 KiB, 8 KiB)". */
export const sizeBucketLabel = (bucket: number): string => {
  if (bucket === 0) return "0 B";
  const lo = 2 ** (bucket - 1);
  const hi = 2 ** bucket;
  return `[${formatBytes(lo)}, ${formatBytes(hi)})`;
};

export const formatBytes = (n: number): string => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
};

/** Adds `from` into `into` (in place). */
export const mergeScanCounters = (into: ScanCounters, from: ScanCounters): ScanCounters => {
  into.files += from.files;
  into.directories += from.directories;
  into.symlinks += from.symlinks;
  into.other += from.other;
  into.bytes += from.bytes;
  into.vanished += from.vanished;
  into.errors += from.errors;
  from.sizeHistogram.forEach((n, i) => {
    into.sizeHistogram[i] = (into.sizeHistogram[i] ?? 0) + n;
  });
  for (let i = 0; i < into.sizeHistogram.length; i++) into.sizeHistogram[i] ??= 0;
  for (const [k, v] of Object.entries(from.hsmStates))
    into.hsmStates[k] = (into.hsmStates[k] ?? 0) + v;
  return into;
};

/**
 * Deterministic id of a walk shard: the same job and directory always give the same id, so a
 * redelivered parent that publishes its children again is de-duplicated by JetStream.
 */
export const shardIdFor = (jobId: string, paths: readonly Buffer[]): string => {
  const h = createHash("sha256").update(jobId);
  // NUL cannot occur in a path, so the joined form is unambiguous.
  for (const p of paths) h.update("\0").update(p);
  return h.digest("base64url").slice(0, 32);
};

/** The first work item of every walk: the job root. */
export const rootWalkShard = (jobId: string): WalkShard => {
  const paths = [Buffer.alloc(0)];
  return { jobId, paths, depth: 0, shardId: shardIdFor(jobId, paths) };
};

/** Sibling directories carried by one walk shard. A constant: message ids depend on it. */
export const WALK_GROUP_DIRECTORIES = 16;
