import { JobKind } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";
import { buildScanSummary } from "../scan/scan-summary.js";
import { scanCounts, scanRow } from "../scan/scan-report.js";
import { buildImportSummary, formatImportSummary } from "./import-summary.js";

export const importReport: JobReport = {
  kind: JobKind.Import,
  name: "import",
  summary: (status) => buildImportSummary(status),
  text: (status) => formatImportSummary(buildImportSummary(status)),
  listing: buildScanSummary,
  counts: scanCounts,
  row: scanRow,
};
