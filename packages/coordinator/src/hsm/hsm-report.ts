import { displayPath } from "@hsmfleet/core";
import type { HsmRequestName } from "@hsmfleet/core";
import { JobKind, emptyHsmCounters, jobStateName } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";
import { formatHsmSummary } from "./hsm-summary.js";
import type { HsmJobSummary } from "./hsm-summary.js";

/** An HSM job's summary from its record (the counters the job writes while it runs). */
export const buildHsmSummary = (s: JobStatus): HsmJobSummary => {
  const h = s.hsm ?? emptyHsmCounters();
  const end = s.finishedAtMs || s.updatedAtMs;
  return {
    jobId: s.spec.jobId,
    request: h.request as HsmRequestName,
    state: jobStateName(s.state),
    items: h.items,
    done: h.done,
    skipped: h.skipped,
    failed: h.failed,
    cancelled: h.cancelled,
    bytes: h.bytes,
    lists: h.lists,
    root: displayPath(s.spec.root),
    elapsedSeconds: Math.max(0, end - s.startedAtMs) / 1000,
    errors: h.failed,
    errorSamples: s.errorSamples.map((e) => ({ path: displayPath(e.path), error: e.message })),
  };
};

/** HSM jobs count items (files) by outcome, and the bytes the copytool moved. */
export const hsmReport: JobReport = {
  kind: JobKind.Hsm,
  name: "hsm",
  summary: buildHsmSummary,
  text: (status) => formatHsmSummary(buildHsmSummary(status)),
  listing: buildHsmSummary,
  counts: (s) => {
    const h = s.hsm ?? emptyHsmCounters();
    return { count: h.done + h.skipped + h.failed + h.cancelled, unit: "items", bytes: h.bytes };
  },
  row: (j) => {
    const h = j.hsm ?? emptyHsmCounters();
    return {
      kind: "hsm",
      bytesDone: h.bytes,
      bytesFound: h.bytes,
      filesDone: h.done + h.skipped + h.failed + h.cancelled,
      filesFound: h.items,
      errors: h.failed,
      progressByBytes: false,
    };
  },
};
