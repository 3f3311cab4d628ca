import { JobKind } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";
import { scanCounts } from "../scan/scan-report.js";
import { buildExportSummary, formatExportSummary } from "./export-summary.js";

export const exportReport: JobReport = {
  kind: JobKind.Export,
  name: "export",
  summary: (status) => buildExportSummary(status),
  text: (status) => formatExportSummary(buildExportSummary(status)),
  listing: (status) => buildExportSummary(status),
  // Exports show what they moved; scans what they saw.
  counts: (s) => ({ ...scanCounts(s), bytes: s.export.bytesExported }),
  row: (j) => ({
    kind: "export",
    bytesDone: j.export.bytesExported,
    bytesFound: j.export.bytesFound,
    filesDone: j.export.filesExported,
    filesFound: j.export.filesFound,
    errors: j.scan.errors + j.export.errors,
    progressByBytes: true,
  }),
};
