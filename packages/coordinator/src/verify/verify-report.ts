import { displayPath, formatNumber } from "@hsmfleet/core";
import { JobKind, jobStateName } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { errorToJson } from "../format.js";
import { jobErrors } from "../job-errors.js";
import type { JobReport } from "../job-report.js";

/**
 * A verify job as its record tells it (`hsmfleet status`, `jobs`): what was compared and how many
 * problems (differences and failures together; `hsmfleet verify` splits them from its log).
 */
export interface VerifyRecordSummary {
  jobId: string;
  root: string;
  container: string;
  prefix: string;
  content: boolean;
  state: string;
  reason: string;
  /** Entries of the tree compared (files, directories, symlinks). */
  entries: number;
  files: number;
  bytes: number;
  contentChecked: number;
  contentBytes: number;
  /** Released files: attributes compared, content not (its data is only in the archive). */
  contentNotChecked: number;
  identicalEntries: number;
  /** Differences and failures, each one line of the job's log. */
  problems: number;
  unsupported: number;
  elapsedSeconds: number;
  samples: Array<{ path: string; operation: string; code: string; message: string }>;
  /** The job's differences file (every difference, NDJSON), when it keeps one. */
  errorLog: string | null;
}

export const buildVerifyRecordSummary = (s: JobStatus): VerifyRecordSummary => {
  const e = s.export;
  const c = s.scan;
  const end = s.finishedAtMs || s.updatedAtMs;
  return {
    jobId: s.spec.jobId,
    root: displayPath(s.spec.root),
    container: s.spec.container,
    prefix: s.spec.prefix,
    content: s.spec.verifyContent,
    state: jobStateName(s.state),
    reason: s.reason,
    // The walk counts the root directory too (like find); it has no blob to compare.
    entries: c.files + Math.max(0, c.directories - 1) + c.symlinks,
    files: e.filesFound,
    bytes: e.bytesFound,
    contentChecked: e.filesExported,
    contentBytes: e.bytesExported,
    contentNotChecked: e.released,
    identicalEntries: e.skipped,
    problems: jobErrors(s),
    unsupported: e.unsupported,
    elapsedSeconds: Math.max(0, (end - s.startedAtMs) / 1000),
    samples: s.errorSamples.map(errorToJson),
    errorLog: s.errorLog || null,
  };
};

const formatVerifyRecord = (s: VerifyRecordSummary): string => {
  const n = (v: number) => formatNumber(v);
  const lines = [
    `verify ${s.jobId} of ${s.root} against ${s.container}${s.prefix ? `/${s.prefix}` : ""}${s.content ? " (with content)" : ""}: ${s.state}${s.reason ? ` (${s.reason})` : ""} in ${s.elapsedSeconds.toFixed(1)} s`,
    `  entries compared      ${n(s.entries)} (${n(s.files)} files, ${n(s.bytes)} bytes)`,
    `  identical             ${n(s.identicalEntries)}`,
    ...(s.content
      ? [`  content checked       ${n(s.contentChecked)} files, ${n(s.contentBytes)} bytes`]
      : []),
    `  differences, errors   ${n(s.problems)}`,
  ];
  for (const d of s.samples.slice(0, 20)) lines.push(`    ${d.code}: ${d.message}`);
  return lines.join("\n");
};

/** Verify jobs count entries compared, identical, and problems. */
export const verifyReport: JobReport = {
  kind: JobKind.Verify,
  name: "verify",
  summary: buildVerifyRecordSummary,
  text: (status) => formatVerifyRecord(buildVerifyRecordSummary(status)),
  listing: buildVerifyRecordSummary,
  counts: (s) => ({
    count: s.scan.files + Math.max(0, s.scan.directories - 1) + s.scan.symlinks,
    unit: "entries",
    bytes: s.export.bytesFound,
  }),
  row: (j) => ({
    kind: "verify",
    bytesDone: j.export.bytesFound,
    bytesFound: j.export.bytesFound,
    filesDone: j.export.filesFound,
    filesFound: j.export.filesFound,
    errors: jobErrors(j),
    progressByBytes: false,
  }),
};
