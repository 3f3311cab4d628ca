import { JobKind } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { observeJob } from "@hsmfleet/telemetry";

/** Publishes a followed job's progress as metrics (hsmfleet_job_*) until the returned function is called. */
export const observeJobProgress = (status: JobStatus): (() => void) =>
  observeJob(status.spec.jobId, () => {
    const exporting = status.spec.kind === JobKind.Export;
    return {
      jobId: status.spec.jobId,
      kind: exporting ? "export" : "scan",
      itemsPublished: status.published,
      itemsCompleted: status.completed,
      bytesDone: exporting ? status.export.bytesExported : status.scan.bytes,
      bytesFound: exporting ? status.export.bytesFound : status.scan.bytes,
      errors: status.scan.errors + status.export.errors,
    };
  });
