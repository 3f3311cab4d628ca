export { runScanJob, resumeScanJob, checkScanRoot, SCAN_DEFAULTS } from "./scan/scan-job.js";
export type { ScanJobOptions, ResumeScanOptions } from "./scan/scan-job.js";
export { buildScanSummary, formatScanSummary } from "./scan/scan-summary.js";
export type { ScanProgress, ScanSummary } from "./scan/scan-summary.js";
export { FleetWatch } from "./fleet-watch.js";
export { cancelJob, openJobStore } from "./job-admin.js";
export { newJobId } from "./job-id.js";
export { LocalLog } from "./local-log.js";
export { entryToNdjson } from "./format.js";
export {
  runExportJob,
  buildExportSummary,
  formatExportSummary,
  EXPORT_DEFAULTS,
} from "./export/export-job.js";
export type { ExportJobOptions, ExportProgress, ExportSummary } from "./export/export-job.js";
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
} from "./import/import-job.js";
export type { ImportJobOptions, ImportProgress, ImportSummary } from "./import/import-job.js";
export {
  runRestoreJob,
  buildRestoreSummary,
  formatRestoreSummary,
  RESTORE_DEFAULTS,
} from "./restore/restore-job.js";
export type { RestoreJobOptions, RestoreProgress, RestoreSummary } from "./restore/restore-job.js";
export { claimRoot } from "./root-claim.js";
export { runHsmJob, formatHsmSummary, HSM_JOB_DEFAULTS } from "./hsm/hsm-job.js";
export type { HsmJobOptions, HsmJobProgress, HsmJobSummary } from "./hsm/hsm-job.js";
export { runVerifyJob, formatVerifySummary } from "./verify/verify-job.js";
export type { VerifyJobOptions, VerifyProgress, VerifySummary } from "./verify/verify-job.js";
