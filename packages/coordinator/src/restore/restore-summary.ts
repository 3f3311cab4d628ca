import { displayPath, formatNumber } from "@hsmfleet/core";
import { describeJobState, jobStateName, withInFlight } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { errorToJson, formatErrorLine } from "../format.js";
import { jobErrors } from "../job-errors.js";

export interface RestoreProgress {
  jobId: string;
  filesRestored: number;
  filesFound: number;
  bytesRestored: number;
  bytesFound: number;
  filesPerSecond: number;
  bytesPerSecond: number;
  etaSeconds: number | undefined;
  errors: number;
  workers: number;
  walking: boolean;
}

export interface RestoreSummary {
  jobId: string;
  /** The directory restored (the same as `path`; docs/json.md). */
  root: string;
  path: string;
  state: string;
  reason: string;
  resumed: boolean;
  filesFound: number;
  filesRestored: number;
  bytesRestored: number;
  notReleased: number;
  errors: number;
  maxInflight: number;
  elapsedSeconds: number;
  filesPerSecond: number;
  bytesPerSecond: number;
  errorSamples: Array<{ path: string; operation: string; code: string; message: string }>;
  errorLog: string | null;
}

export const buildRestoreSummary = (record: JobStatus, resumed = false): RestoreSummary => {
  // A running job's counters include the work of its items in flight.
  const s = withInFlight(record);
  const end = s.finishedAtMs || s.updatedAtMs;
  const elapsedSeconds = Math.max(0, (end - s.startedAtMs) / 1000);
  const r = s.restore;
  return {
    jobId: s.spec.jobId,
    root: displayPath(s.spec.root),
    path: displayPath(s.spec.root),
    state: jobStateName(s.state),
    reason: s.reason,
    resumed,
    filesFound: r.filesFound,
    filesRestored: r.filesRestored,
    bytesRestored: r.bytesRestored,
    notReleased: r.notReleased,
    errors: jobErrors(s),
    maxInflight: s.spec.import.maxInflight,
    elapsedSeconds,
    filesPerSecond: elapsedSeconds > 0 ? r.filesRestored / elapsedSeconds : 0,
    bytesPerSecond: elapsedSeconds > 0 ? Math.round(r.bytesRestored / elapsedSeconds) : 0,
    errorSamples: s.errorSamples.map(errorToJson),
    errorLog: s.errorLog || null,
  };
};

export const formatRestoreSummary = (s: RestoreSummary, maxErrorsShown = 20): string => {
  const n = (v: number) => formatNumber(Math.round(v));
  const lines = [
    `restore ${s.jobId} of ${s.path}: ${describeJobState(s.state, s.errors)}${s.reason ? ` (${s.reason})` : ""}${s.resumed ? " (resumed)" : ""} in ${s.elapsedSeconds.toFixed(1)} s, at most ${n(s.maxInflight)} files in flight`,
    `  files restored   ${n(s.filesRestored)} of ${n(s.filesFound)} released (${s.filesPerSecond.toFixed(1)} files/s)`,
    `  bytes restored   ${n(s.bytesRestored)} (${(s.bytesPerSecond / 2 ** 20).toFixed(1)} MiB/s)`,
    `  not released     ${n(s.notReleased)}`,
    `  errors           ${n(s.errors)}`,
  ];
  for (const e of s.errorSamples.slice(0, maxErrorsShown))
    lines.push(`    ${formatErrorLine(e, s.path)}`);
  return lines.join("\n");
};
