// `@hsmfleet/coordinator/reports`: how each job kind shows itself, without the job runners (the
// dashboard needs only this).
export { JOB_REPORTS, jobReport } from "./job-reports.js";
export type { JobReport, JobRowCounters } from "./job-report.js";
