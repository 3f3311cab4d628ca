import { JobKind } from "@hsmfleet/protocol";
import { jobErrors } from "../job-errors.js";
import type { JobReport } from "../job-report.js";
import { buildImportSummary, formatImportSummary } from "./import-summary.js";

/** Imports count blobs (walked, imported) and, with --mode full, the bytes downloaded. */
export const importReport: JobReport = {
  kind: JobKind.Import,
  name: "import",
  summary: (status) => buildImportSummary(status),
  text: (status) => formatImportSummary(buildImportSummary(status)),
  listing: (status) => buildImportSummary(status),
  counts: (s) => ({
    count: s.import.totalBlobsImported,
    unit: "blobs",
    bytes: s.import.bytesImported,
  }),
  row: (j) => ({
    kind: "import",
    bytesDone: j.import.bytesDownloaded,
    bytesFound: j.import.bytesQueued,
    filesDone: j.import.totalBlobsImported,
    filesFound: j.import.totalBlobsWalked,
    errors: jobErrors(j),
    progressByBytes: j.import.bytesQueued > 0,
  }),
};
