export { runScanJob, resumeScanJob, checkScanRoot, SCAN_DEFAULTS } from "./scan/scan-job.js";
export type { ScanJobOptions, ResumeScanOptions } from "./scan/scan-job.js";
export { buildScanSummary, formatScanSummary } from "./scan/scan-summary.js";
export type { ScanProgress, ScanSummary } from "./scan/scan-summary.js";
export { FleetWatch } from "./fleet-watch.js";
export { CANCEL_DEFAULTS, cancelJob, openJobStore } from "./job-admin.js";
export type { CancelOutcome } from "./job-admin.js";
export { newJobId } from "./job-id.js";
export { checkExportSource } from "./export/export-source.js";
export type { ExportSource } from "./export/export-source.js";
export { LocalLog } from "./local-log.js";
export { entryToNdjson } from "./format.js";
export { runExportJob, EXPORT_DEFAULTS } from "./export/export-job.js";
export type { ExportJobOptions } from "./export/export-job.js";
export { buildExportSummary, formatExportSummary } from "./export/export-summary.js";
export type { ExportProgress, ExportSummary } from "./export/export-summary.js";
export { followJob, COORDINATOR_STALE_MS } from "./job-follower.js";
export { jobErrors } from "./job-errors.js";
export type { FollowOptions } from "./job-follower.js";
export { buildImportSummary, formatImportSummary } from "./import/import-summary.js";
export type { ImportProgress, ImportSummary } from "./import/import-summary.js";
export {
  runImportJob,
  normalizeImportPrefixes,
  IMPORT_DEFAULTS,
  IMPORT_MODES,
  CONFLICT_MODES,
} from "./import/import-job.js";
export type { ImportJobOptions } from "./import/import-job.js";
export { runRestoreJob, restoreProgress, RESTORE_DEFAULTS } from "./restore/restore-job.js";
export type { RestoreJobOptions } from "./restore/restore-job.js";
export { buildRestoreSummary, formatRestoreSummary } from "./restore/restore-summary.js";
export type { RestoreProgress, RestoreSummary } from "./restore/restore-summary.js";
export { claimRoot } from "./root-claim.js";
export { runHsmJob, HSM_JOB_DEFAULTS, resolveAbs } from "./hsm/hsm-job.js";
export { hsmJobOrigin } from "./hsm/hsm-origin.js";
export type { HsmJobOptions } from "./hsm/hsm-job.js";
export { formatHsmSummary } from "./hsm/hsm-summary.js";
export type { HsmJobProgress, HsmJobSummary } from "./hsm/hsm-summary.js";
export { runVerifyJob } from "./verify/verify-job.js";
export type { VerifyJobOptions } from "./verify/verify-job.js";
export { formatVerifySummary } from "./verify/verify-summary.js";
export type { VerifyProgress, VerifySummary } from "./verify/verify-summary.js";
export { JOB_REPORTS, jobReport } from "./job-reports.js";
export type { JobReport, JobRowCounters } from "./job-report.js";
export { ResultLedger, MAX_CHILDREN_PER_RESULT } from "./result-ledger.js";
export type { LedgerRefusal, LedgerVerdict } from "./result-ledger.js";
export {
  JOB_SPEC_KINDS,
  JOB_SPEC_SCHEMA,
  SERVED_KINDS,
  JobSpecError,
  validateJobSpec,
} from "./intake/job-spec.js";
export type { JobSpec, JobSpecKind } from "./intake/job-spec.js";
export { JobLifecycle, amlfsStateOf } from "./intake/lifecycle-events.js";
export type {
  AmlfsJobState,
  LifecycleEvent,
  LifecycleEventType,
  LifecycleSink,
} from "./intake/lifecycle-events.js";
