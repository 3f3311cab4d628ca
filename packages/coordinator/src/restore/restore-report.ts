import { JobKind } from "@hsmfleet/protocol";
import { jobErrors } from "../job-errors.js";
import type { JobReport } from "../job-report.js";
import { buildRestoreSummary, formatRestoreSummary } from "./restore-summary.js";

/** Restores count released files found and restored, and their bytes. */
export const restoreReport: JobReport = {
  kind: JobKind.Restore,
  name: "restore",
  summary: (status) => buildRestoreSummary(status),
  text: (status) => formatRestoreSummary(buildRestoreSummary(status)),
  listing: (status) => buildRestoreSummary(status),
  counts: (s) => ({
    count: s.restore.filesRestored,
    unit: "files",
    bytes: s.restore.bytesRestored,
  }),
  row: (j) => ({
    kind: "restore",
    bytesDone: j.restore.bytesRestored,
    bytesFound: j.restore.bytesFound,
    filesDone: j.restore.filesRestored,
    filesFound: j.restore.filesFound,
    errors: jobErrors(j),
    progressByBytes: true,
  }),
};
