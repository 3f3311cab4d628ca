import { JobKind } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";
import { buildScanSummary } from "../scan/scan-summary.js";
import { scanCounts, scanRow } from "../scan/scan-report.js";
import { buildRestoreSummary, formatRestoreSummary } from "./restore-summary.js";

export const restoreReport: JobReport = {
  kind: JobKind.Restore,
  name: "restore",
  summary: (status) => buildRestoreSummary(status),
  text: (status) => formatRestoreSummary(buildRestoreSummary(status)),
  listing: buildScanSummary,
  counts: scanCounts,
  row: scanRow,
};
