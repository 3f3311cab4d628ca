import { displayPath, formatNumber } from "@hsmfleet/core";
import { describeJobState, jobStateName, withInFlight } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { errorToJson, formatErrorLine } from "../format.js";
import { jobErrors } from "../job-errors.js";

export interface ExportProgress {
  jobId: string;
  filesDone: number;
  filesQueued: number;
  filesFound: number;
  bytesDone: number;
  bytesQueued: number;
  skipped: number;
  errors: number;
  workers: number;
  elapsedMs: number;
  bytesPerSecond: number;
  /** Seconds left for what is queued so far, from files and bytes both (eta.ts; the walk may still add more). */
  etaSeconds: number | undefined;
}

export interface ExportSummary {
  jobId: string;
  root: string;
  container: string;
  prefix: string;
  state: string;
  reason: string;
  /** True when this run picked up a job whose coordinator had died. */
  resumed: boolean;
  filesExported: number;
  directoriesExported: number;
  symlinksExported: number;
  bytes: number;
  /** Unchanged since the last export. */
  skipped: number;
  /** Devices, FIFOs and sockets: Blob cannot hold them. */
  unsupported: number;
  errors: number;
  filesFound: number;
  bytesFound: number;
  elapsedSeconds: number;
  bytesPerSecond: number;
  errorSamples: Array<{ path: string; operation: string; code: string; message: string }>;
  logContainer: string;
  errorLog: string | null;
}

export const buildExportSummary = (record: JobStatus, resumed = false): ExportSummary => {
  // A running job's counters include the work of its items in flight.
  const s = withInFlight(record);
  const end = s.finishedAtMs || s.updatedAtMs;
  const elapsedSeconds = Math.max(0, (end - s.startedAtMs) / 1000);
  const e = s.export;
  return {
    jobId: s.spec.jobId,
    root: displayPath(s.spec.root),
    container: s.spec.container,
    prefix: s.spec.prefix,
    state: jobStateName(s.state),
    reason: s.reason,
    resumed,
    filesExported: e.filesExported,
    directoriesExported: e.directoriesExported,
    symlinksExported: e.symlinksExported,
    bytes: e.bytesExported,
    skipped: e.skipped,
    unsupported: e.unsupported,
    errors: jobErrors(s),
    filesFound: e.filesFound,
    bytesFound: e.bytesFound,
    elapsedSeconds,
    bytesPerSecond: elapsedSeconds > 0 ? Math.round(e.bytesExported / elapsedSeconds) : 0,
    errorSamples: s.errorSamples.map(errorToJson),
    logContainer: s.spec.logContainer,
    errorLog: s.errorLog || null,
  };
};

export const formatExportSummary = (s: ExportSummary, maxErrorsShown = 20): string => {
  const n = (v: number) => formatNumber(v);
  const mib = (v: number) => (v / 1048576).toFixed(1);
  const lines = [
    `export ${s.jobId} of ${s.root} to ${s.container}${s.prefix ? `/${s.prefix}` : ""}: ${describeJobState(s.state, s.errors)}${s.reason ? ` (${s.reason})` : ""}${s.resumed ? " (resumed)" : ""} in ${s.elapsedSeconds.toFixed(1)} s`,
    `  files exported        ${n(s.filesExported)} of ${n(s.filesFound)} found`,
    `  directories exported  ${n(s.directoriesExported)}`,
    `  symlinks exported     ${n(s.symlinksExported)}`,
    `  bytes                 ${n(s.bytes)} (${mib(s.bytes)} MiB, ${mib(s.bytesPerSecond)} MiB/s)`,
    `  skipped (unchanged)   ${n(s.skipped)}`,
    `  unsupported           ${n(s.unsupported)}${s.unsupported > 0 ? ` (skipped; named in ${s.logContainer}/${s.jobId}/errors.ndjson)` : ""}`,
    `  errors                ${n(s.errors)}`,
  ];
  // Skipped entries (operation "skip") are counted above, not listed among the errors.
  for (const e of s.errorSamples.filter((x) => x.operation !== "skip").slice(0, maxErrorsShown))
    lines.push(`    ${formatErrorLine(e, s.root)}`);
  if (s.errors > maxErrorsShown)
    lines.push(`    … all errors in ${s.logContainer}/${s.jobId}/errors.ndjson`);
  lines.push(
    `  logs in container ${s.logContainer}: ${s.jobId}/summary.json, ${s.jobId}/errors.ndjson`,
  );
  return lines.join("\n");
};
