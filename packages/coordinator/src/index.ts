export {
  runScanJob,
  resumeScanJob,
  checkScanRoot,
  jobStateName,
  SCAN_DEFAULTS,
} from "./scan-job.js";
export type { ScanJobOptions, ResumeScanOptions } from "./scan-job.js";
export { buildScanSummary, formatScanSummary } from "./scan-summary.js";
export type { ScanProgress, ScanSummary } from "./scan-summary.js";
export { FleetWatch } from "./fleet-watch.js";
export { cancelJob, openJobStore } from "./job-admin.js";
export { newJobId } from "./job-id.js";
export { LocalLog } from "./local-log.js";
export { entryToNdjson } from "./format.js";
