import { JobKind } from "@hsmfleet/protocol";
import type { JobReport } from "./job-report.js";
import { exportReport } from "./export/export-report.js";
import { importReport } from "./import/import-report.js";
import { restoreReport } from "./restore/restore-report.js";
import { hsmReport } from "./hsm/hsm-report.js";
import { policyReport } from "./policy/policy-report.js";
import { scanReport, scanReportAs } from "./scan/scan-report.js";
import { verifyReport } from "./verify/verify-report.js";
import { syncReport } from "./sync/sync-report.js";
import { autoImportReport } from "./autoimport/autoimport-report.js";

/** Every job kind's report: a new kind adds its line here (the type requires one per kind). */
export const JOB_REPORTS: { readonly [K in JobKind]: JobReport } = {
  [JobKind.Scan]: scanReport,
  [JobKind.Export]: exportReport,
  [JobKind.Import]: importReport,
  [JobKind.Restore]: restoreReport,
  [JobKind.Hsm]: hsmReport,
  [JobKind.Verify]: verifyReport,
  [JobKind.Sync]: syncReport,
  [JobKind.Policy]: policyReport,
  [JobKind.AutoImport]: autoImportReport,
};

/** A job of a kind this version does not know (written by a newer one): its walk counters. */
const unknownKind = (kind: JobKind): JobReport => scanReportAs(kind, "job");

/** The report of a job's kind. */
export const jobReport = (kind: JobKind): JobReport =>
  (JOB_REPORTS as Partial<Record<number, JobReport>>)[kind] ?? unknownKind(kind);
