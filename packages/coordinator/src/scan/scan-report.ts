import { JobKind } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { jobErrors } from "../job-errors.js";
import type { JobLineCounts, JobReport, JobRowCounters } from "../job-report.js";
import { buildScanSummary, formatScanSummary } from "./scan-summary.js";
import { formatNumber } from "@hsmfleet/core";

/** Entries walked and bytes found: the scan counters every walk keeps. */
export const scanCounts = (s: JobStatus): JobLineCounts => {
  const c = s.scan;
  return {
    count: c.files + c.directories + c.symlinks + c.other,
    unit: "entries",
    bytes: c.bytes,
  };
};

/** `hsmfleet status` of a walk: its summary, and while it runs the directories still queued. */
const scanText = (status: JobStatus): string => {
  const lines = [formatScanSummary(buildScanSummary(status))];
  if (status.state === 2)
    lines.push(`  ${formatNumber(status.published - status.completed)} directories queued`);
  return lines.join("\n");
};

/** The dashboard row of a walk: what it found; progress by items. */
const scanRow = (j: JobStatus, kind: string): JobRowCounters => ({
  kind,
  bytesDone: j.scan.bytes,
  bytesFound: j.scan.bytes,
  filesDone: j.scan.files,
  filesFound: j.scan.files,
  errors: jobErrors(j),
  progressByBytes: false,
});

/** A job shown by its walk's scan counters: a scan, or a kind this version does not know. */
export const scanReportAs = (kind: JobKind, name: string): JobReport => ({
  kind,
  name,
  summary: buildScanSummary,
  text: scanText,
  listing: buildScanSummary,
  counts: scanCounts,
  row: (j) => scanRow(j, name),
});

export const scanReport: JobReport = scanReportAs(JobKind.Scan, "scan");
