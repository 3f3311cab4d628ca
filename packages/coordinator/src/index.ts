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
export { runSyncService, syncNameFor, SYNC_DEFAULTS } from "./sync/sync-service.js";
export type { SyncServiceOptions } from "./sync/sync-service.js";
export { readSyncStatus } from "./sync/sync-state.js";
export type { SyncStatusRecord } from "./sync/sync-state.js";
export { PosixChangeSource } from "./sync/posix-source.js";
export { Coalescer } from "./sync/coalesce.js";
export type { ChangeSource, ChangeCheckpoint, SourceChange } from "./sync/change-source.js";
export { LustreChangelogSource } from "./sync/lustre-changelog-source.js";
export type { LustreSourceOptions } from "./sync/lustre-changelog-source.js";
export { parseChangelogLine, ChangelogParseError } from "./sync/lustre-changelog-parser.js";
export {
  POLICY_DEFAULTS,
  POLICY_FILE_KEYS,
  loadPolicyFile,
  parsePolicyText,
} from "./policy/policy-file.js";
export { PolicyFileError } from "./policy/yaml-reader.js";
export type { PolicyProblem } from "./policy/yaml-reader.js";
export { formatPolicyFile } from "./policy/policy-format.js";
export { runPolicyEvaluation } from "./policy/policy-job.js";
export type { PolicyEvaluationOptions, PolicyEvaluationResult } from "./policy/policy-job.js";
export { POLICY_RUN_DEFAULTS, findPolicy, runPolicy } from "./policy/policy-run.js";
export type { PolicyRunOptions, PolicyRunSummary } from "./policy/policy-run.js";
export { TokenBucket } from "./policy/token-bucket.js";
export { formatPolicyRun } from "./policy/policy-run-format.js";
export {
  POLICY_SERVE_DEFAULTS,
  POLICY_STATE_BUCKET,
  servePolicies,
} from "./policy/policy-serve.js";
export type { PolicyServeOptions, PolicyState } from "./policy/policy-serve.js";
export { REMOVALS_BUCKET, RemovalService, removalKey } from "./policy/pending-removals.js";
export type { PendingRemoval, RemovalStats } from "./policy/pending-removals.js";
export { ensureChangesStream } from "./policy/change-stream.js";
export {
  bytesAboveLow,
  bytesToFree,
  fileSystemUsage,
  measureUsage,
  parseLfsDf,
} from "./policy/usage.js";
export type { UsageSample } from "./policy/usage.js";
export { LAST_REPORT_KEY, REPORT_DEFAULTS, runReport } from "./policy/report-job.js";
export type { FleetReport, ReportOptions } from "./policy/report-job.js";
export { formatReport } from "./policy/report-format.js";
export { groupLabel, userLabel } from "./policy/owner-names.js";
export { readPolicyPanel } from "./policy/policy-panel.js";
export type { PolicyPanel } from "./policy/policy-panel.js";
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
