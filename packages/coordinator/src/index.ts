export { runScanJob, resumeScanJob, checkScanRoot, SCAN_DEFAULTS } from "./scan-job.js";
export type { ScanJobOptions, ResumeScanOptions } from "./scan-job.js";
export { buildScanSummary, formatScanSummary } from "./scan-summary.js";
export type { ScanProgress, ScanSummary } from "./scan-summary.js";
export { FleetWatch } from "./fleet-watch.js";
export { CANCEL_DEFAULTS, cancelJob, openJobStore } from "./job-admin.js";
export type { CancelOutcome } from "./job-admin.js";
export { newJobId } from "./job-id.js";
export { LocalLog } from "./local-log.js";
export { entryToNdjson } from "./format.js";
export {
  runExportJob,
  buildExportSummary,
  formatExportSummary,
  EXPORT_DEFAULTS,
} from "./export-job.js";
export type { ExportJobOptions, ExportProgress, ExportSummary } from "./export-job.js";
export { followJob, jobErrors, COORDINATOR_STALE_MS } from "./job-follower.js";
export type { FollowOptions } from "./job-follower.js";
export {
  runImportJob,
  buildImportSummary,
  formatImportSummary,
  normalizeImportPrefixes,
  IMPORT_DEFAULTS,
  IMPORT_MODES,
  CONFLICT_MODES,
} from "./import-job.js";
export type { ImportJobOptions, ImportProgress, ImportSummary } from "./import-job.js";
export {
  runRestoreJob,
  buildRestoreSummary,
  formatRestoreSummary,
  restoreProgress,
  RESTORE_DEFAULTS,
} from "./restore-job.js";
export type { RestoreJobOptions, RestoreProgress, RestoreSummary } from "./restore-job.js";
export { claimRoot } from "./root-claim.js";
export { runHsmJob, formatHsmSummary, HSM_JOB_DEFAULTS } from "./hsm-job.js";
export type { HsmJobOptions, HsmJobProgress, HsmJobSummary } from "./hsm-job.js";
export { resolveAbs } from "./hsm-job.js";
export { runVerifyJob, formatVerifySummary } from "./verify-job.js";
export type { VerifyJobOptions, VerifyProgress, VerifySummary } from "./verify-job.js";
