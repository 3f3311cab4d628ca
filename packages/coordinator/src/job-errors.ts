import type { JobStatus } from "@hsmfleet/protocol";

/** Errors of a job: walk errors plus those of its transfers, imports and restores. */
export const jobErrors = (s: JobStatus): number =>
  s.scan.errors + s.export.errors + s.import.totalErrors + s.restore.errors;
