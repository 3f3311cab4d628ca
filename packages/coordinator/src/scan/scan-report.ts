import type { JobKind, JobStatus } from "@hsmfleet/protocol";
import { JobKind as Kinds } from "@hsmfleet/protocol";
import type { JobReport, JobRowCounters } from "../job-report.js";
import { buildScanSummary, formatScanSummary } from "./scan-summary.js";

/** Entries walked and bytes found: the scan counters every walk keeps. */
export const scanCounts = (s: JobStatus): { entries: number; bytes: number } => {
  const c = s.scan;
  return { entries: c.files + c.directories + c.symlinks + c.other, bytes: c.bytes };
};

/** The dashboard row of a walk: what it found; progress by items. */
export const scanRow = (j: JobStatus): JobRowCounters => ({
  kind: j.spec.kind === Kinds.Scan ? "scan" : "job",
  bytesDone: j.scan.bytes,
  bytesFound: j.scan.bytes,
  filesDone: j.scan.files,
  filesFound: j.scan.files,
  errors: j.scan.errors + j.export.errors,
  progressByBytes: false,
});

/** A job shown by its walk's scan counters (a scan; kinds without a report of their own). */
export const scanReportAs = (kind: JobKind, name: string): JobReport => ({
  kind,
  name,
  summary: buildScanSummary,
  text: (status) => {
    const lines = [formatScanSummary(buildScanSummary(status))];
    if (status.state === 2)
      lines.push(
        `  ${(status.published - status.completed).toLocaleString("en-US")} directories queued`,
      );
    return lines.join("\n");
  },
  listing: buildScanSummary,
  counts: scanCounts,
  row: scanRow,
});

export const scanReport: JobReport = scanReportAs(Kinds.Scan, "scan");
