import { displayPath, formatNumber } from "@hsmfleet/core";
import { describeJobState, jobStateName, withInFlight } from "@hsmfleet/protocol";
import type { ConflictMode, ImportMode, JobStatus } from "@hsmfleet/protocol";
import { errorToJson, formatErrorLine } from "../format.js";
import { jobErrors } from "../job-errors.js";

export interface ImportProgress {
  jobId: string;
  blobsWalked: number;
  blobsPerSecond: number;
  imported: number;
  filesQueued: number;
  filesDownloaded: number;
  bytesQueued: number;
  bytesDownloaded: number;
  bytesPerSecond: number;
  etaSeconds: number | undefined;
  conflicts: number;
  errors: number;
  workers: number;
}

/** Status counters named like AMLFS's importJobs, plus what hsmfleet adds. */
export interface ImportSummary {
  jobId: string;
  /** The import's target directory (the same as `target`; docs/json.md). */
  root: string;
  target: string;
  container: string;
  prefixes: string[];
  mode: ImportMode;
  conflictResolutionMode: ConflictMode;
  state: string;
  reason: string;
  resumed: boolean;
  totalBlobsWalked: number;
  blobsWalkedPerSecond: number;
  totalBlobsImported: number;
  blobsImportedPerSecond: number;
  importedFiles: number;
  importedDirectories: number;
  importedSymlinks: number;
  preexistingFiles: number;
  preexistingDirectories: number;
  preexistingSymlinks: number;
  totalErrors: number;
  /** The same as totalErrors (AMLFS's name), spelled as in every other summary (docs/json.md). */
  errors: number;
  totalConflicts: number;
  bytesImported: number;
  elapsedSeconds: number;
  errorSamples: Array<{ path: string; operation: string; code: string; message: string }>;
  logContainer: string;
}

export const buildImportSummary = (record: JobStatus, resumed = false): ImportSummary => {
  // A running job's counters include the work of its items in flight.
  const s = withInFlight(record);
  const end = s.finishedAtMs || s.updatedAtMs;
  const elapsedSeconds = Math.max(0, (end - s.startedAtMs) / 1000);
  const c = s.import;
  const rate = (v: number) => (elapsedSeconds > 0 ? Math.round(v / elapsedSeconds) : 0);
  return {
    jobId: s.spec.jobId,
    root: displayPath(s.spec.root),
    target: displayPath(s.spec.root),
    container: s.spec.container,
    prefixes: s.spec.import.prefixes.map((p) => `/${p}`),
    mode: s.spec.import.mode,
    conflictResolutionMode: s.spec.import.conflict,
    state: jobStateName(s.state),
    reason: s.reason,
    resumed,
    totalBlobsWalked: c.totalBlobsWalked,
    blobsWalkedPerSecond: rate(c.totalBlobsWalked),
    totalBlobsImported: c.totalBlobsImported,
    blobsImportedPerSecond: rate(c.totalBlobsImported),
    importedFiles: c.importedFiles,
    importedDirectories: c.importedDirectories,
    importedSymlinks: c.importedSymlinks,
    preexistingFiles: c.preexistingFiles,
    preexistingDirectories: c.preexistingDirectories,
    preexistingSymlinks: c.preexistingSymlinks,
    totalErrors: jobErrors(s),
    errors: jobErrors(s),
    totalConflicts: c.totalConflicts,
    bytesImported: c.bytesImported,
    elapsedSeconds,
    errorSamples: s.errorSamples.map(errorToJson),
    logContainer: s.spec.logContainer,
  };
};

export const formatImportSummary = (s: ImportSummary, maxErrorsShown = 20): string => {
  const n = (v: number) => formatNumber(v);
  const lines = [
    `import ${s.jobId} of ${s.container} (${s.prefixes.join(", ")}) into ${s.target}, --mode ${s.mode}, --conflict ${s.conflictResolutionMode}: ${describeJobState(s.state, s.totalErrors)}${s.reason ? ` (${s.reason})` : ""}${s.resumed ? " (resumed)" : ""} in ${s.elapsedSeconds.toFixed(1)} s`,
    `  blobs walked          ${n(s.totalBlobsWalked)} (${n(s.blobsWalkedPerSecond)}/s)`,
    `  blobs imported        ${n(s.totalBlobsImported)}: ${n(s.importedFiles)} files, ${n(s.importedDirectories)} directories, ${n(s.importedSymlinks)} symlinks`,
    `  pre-existing          ${n(s.preexistingFiles)} files, ${n(s.preexistingDirectories)} directories, ${n(s.preexistingSymlinks)} symlinks`,
    `  bytes imported        ${n(s.bytesImported)}`,
    `  conflicts             ${n(s.totalConflicts)}`,
    `  errors                ${n(s.totalErrors)}`,
  ];
  for (const e of s.errorSamples.slice(0, maxErrorsShown))
    lines.push(`    ${formatErrorLine(e, s.target)}`);
  lines.push(
    `  logs in container ${s.logContainer}: ${s.jobId}/summary.json, errors.ndjson, conflicts.ndjson`,
  );
  return lines.join("\n");
};
