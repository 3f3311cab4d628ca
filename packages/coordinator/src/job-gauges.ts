import type { JobStatus } from "@hsmfleet/protocol";
import { observeJob } from "@hsmfleet/telemetry";
import { jobReport } from "./job-reports.js";

/** Publishes a followed job's progress as metrics (hsmfleet_job_*) until the returned function is called. */
export const observeJobProgress = (status: JobStatus): (() => void) =>
  observeJob(status.spec.jobId, () => {
    // The job's own counters, as its kind reports them (job-reports.ts).
    const report = jobReport(status.spec.kind);
    const row = report.row(status);
    return {
      jobId: status.spec.jobId,
      kind: report.name,
      itemsPublished: status.published,
      itemsCompleted: status.completed,
      bytesDone: row.bytesDone,
      bytesFound: row.bytesFound,
      filesDone: row.filesDone,
      filesFound: row.filesFound,
      errors: row.errors,
    };
  });
