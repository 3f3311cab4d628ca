import { displayPath, formatNumber } from "@hsmfleet/core";
import { describeJobState, formatBytes, jobStateName, sizeBucketLabel } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { errorToJson, formatErrorLine } from "../format.js";

export interface ScanProgress {
  jobId: string;
  entries: number;
  files: number;
  directories: number;
  bytes: number;
  errors: number;
  vanished: number;
  /** Directories published but not yet reported. */
  outstanding: number;
  workers: number;
  elapsedMs: number;
  entriesPerSecond: number;
}

export interface ScanSummary {
  jobId: string;
  root: string;
  state: string;
  reason: string;
  files: number;
  directories: number;
  symlinks: number;
  other: number;
  bytes: number;
  /** Entries that disappeared between readdir and lstat (or directories before they were read). */
  vanished: number;
  errors: number;
  sizeHistogram: Array<{ bucket: string; minBytes: number; maxBytes: number; files: number }>;
  hsmStates: Record<string, number>;
  errorSamples: Array<{ path: string; operation: string; code: string; message: string }>;
  errorLog: string | null;
  listFile: string | null;
  elapsedSeconds: number;
  entriesPerSecond: number;
}

export const buildScanSummary = (status: JobStatus): ScanSummary => {
  const s = status.scan;
  const end = status.finishedAtMs || status.updatedAtMs;
  const elapsedSeconds = Math.max(0, (end - status.startedAtMs) / 1000);
  const entries = s.files + s.directories + s.symlinks + s.other;
  return {
    jobId: status.spec.jobId,
    root: displayPath(status.spec.root),
    state: jobStateName(status.state),
    reason: status.reason,
    files: s.files,
    directories: s.directories,
    symlinks: s.symlinks,
    other: s.other,
    bytes: s.bytes,
    vanished: s.vanished,
    errors: s.errors,
    sizeHistogram: s.sizeHistogram
      .map((files, bucket) => ({
        bucket: sizeBucketLabel(bucket),
        minBytes: bucket === 0 ? 0 : 2 ** (bucket - 1),
        maxBytes: bucket === 0 ? 0 : 2 ** bucket - 1,
        files,
      }))
      .filter((b) => b.files > 0),
    hsmStates: s.hsmStates,
    errorSamples: status.errorSamples.map(errorToJson),
    errorLog: status.errorLog || null,
    listFile: status.listFile || null,
    elapsedSeconds,
    entriesPerSecond: elapsedSeconds > 0 ? Math.round(entries / elapsedSeconds) : entries,
  };
};

const n = (v: number) => formatNumber(v);

/** The human summary `hsmfleet scan` prints. */
/**
 * `hsmUnreadable`: why the HSM states cannot be trusted (a non-root walk cannot read trusted.*
 * xattrs: every file would read as new); printed instead of the counts.
 */
export const formatScanSummary = (
  s: ScanSummary,
  maxErrorsShown = 20,
  hsmUnreadable?: string,
): string => {
  const lines = [
    `scan ${s.jobId} of ${s.root}: ${describeJobState(s.state, s.errors)}${s.reason ? ` (${s.reason})` : ""} in ${s.elapsedSeconds.toFixed(1)} s (${n(s.entriesPerSecond)} entries/s)`,
    `  files        ${n(s.files)}`,
    `  directories  ${n(s.directories)}`,
    `  symlinks     ${n(s.symlinks)}`,
    `  other        ${n(s.other)}`,
    `  bytes        ${n(s.bytes)} (${formatBytes(s.bytes)})`,
    `  vanished     ${n(s.vanished)}`,
    `  errors       ${n(s.errors)}`,
  ];
  if (s.sizeHistogram.length > 0) {
    lines.push("  file sizes:");
    const max = Math.max(...s.sizeHistogram.map((b) => b.files));
    for (const b of s.sizeHistogram) {
      const bar = "#".repeat(Math.max(1, Math.round((b.files / max) * 30)));
      lines.push(`    ${b.bucket.padEnd(22)} ${n(b.files).padStart(12)}  ${bar}`);
    }
  }
  const states = Object.entries(s.hsmStates).sort((a, b) => b[1] - a[1]);
  if (hsmUnreadable !== undefined && states.length > 0) {
    lines.push(`  HSM states (regular files): ${hsmUnreadable}`);
  } else if (states.length > 0) {
    lines.push("  HSM states (regular files):");
    for (const [name, count] of states)
      lines.push(`    ${name.padEnd(10)} ${n(count).padStart(12)}`);
  }
  if (s.errorSamples.length > 0) {
    lines.push("  problems:");
    for (const e of s.errorSamples.slice(0, maxErrorsShown))
      lines.push(`    ${formatErrorLine(e, s.root)}`);
    const more = s.errors + s.vanished - Math.min(s.errorSamples.length, maxErrorsShown);
    if (more > 0) lines.push(`    … ${n(more)} more${s.errorLog ? `, all in ${s.errorLog}` : ""}`);
  }
  if (s.listFile) lines.push(`  entries listed in ${s.listFile}`);
  return lines.join("\n");
};
