import type { JobKind, JobStatus } from "@hsmfleet/protocol";

/** A job's row on the live dashboard: what it moved or found, in its own counters. */
export interface JobRowCounters {
  /** The kind as the dashboard names it. */
  kind: string;
  bytesDone: number;
  bytesFound: number;
  filesDone: number;
  filesFound: number;
  errors: number;
  /** Progress and ETA follow bytesDone/bytesFound (else progress is items completed/published). */
  progressByBytes: boolean;
}

/** A job's line in `hsmfleet jobs`: `<count> <unit>  <bytes>`. */
export interface JobLineCounts {
  count: number;
  /** What is counted, plural: "entries" (a walk), "files", "blobs", "items". */
  unit: string;
  bytes: number;
}

/**
 * Everything a job kind shows of itself, in one place per kind (`<kind>/<kind>-report.ts`),
 * listed by kind in job-reports.ts: `hsmfleet status` (text and --json), `hsmfleet jobs`
 * (table and --json) and the dashboard's job row all read a job through its kind's report, so a
 * kind without one does not compile, and none is shown with another kind's counters by accident.
 */
export interface JobReport {
  readonly kind: JobKind;
  /** The kind's name in `hsmfleet jobs`, in `kind` of every --json and in the job spans. */
  readonly name: string;
  /** `hsmfleet status --json`: the kind's summary (the caller adds `kind` and `outstanding`). */
  summary(status: JobStatus): object;
  /** `hsmfleet status`: the human summary, one or more lines without a final newline. */
  text(status: JobStatus): string;
  /** `hsmfleet jobs --json`: one element's fields (the caller adds `kind`). */
  listing(status: JobStatus): object;
  /** `hsmfleet jobs`: what the job's line counts ("entries", "files", …) and its bytes. */
  counts(status: JobStatus): JobLineCounts;
  /** The dashboard's job row. */
  row(status: JobStatus): JobRowCounters;
}
