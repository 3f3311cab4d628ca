import { JobKind, jobStateName } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";

/** `hsmfleet status --json` of a sync service's record: what it has applied so far. */
export const buildSyncSummary = (s: JobStatus): object => ({
  jobId: s.spec.jobId,
  state: jobStateName(s.state),
  root: s.spec.root.toString(),
  container: s.spec.container,
  prefix: s.spec.prefix,
  filesExported: s.export.filesExported,
  directoriesExported: s.export.directoriesExported,
  symlinksExported: s.export.symlinksExported,
  bytesExported: s.export.bytesExported,
  failures: s.export.errors,
});

export const syncReport: JobReport = {
  kind: JobKind.Sync,
  name: "sync",
  summary: buildSyncSummary,
  text: (s) =>
    [
      `sync ${s.spec.jobId}: ${jobStateName(s.state)}`,
      `  ${s.spec.root.toString()} -> ${s.spec.container}${s.spec.prefix ? `/${s.spec.prefix}` : ""}`,
      `  files exported ${s.export.filesExported} (${(s.export.bytesExported / 1048576).toFixed(1)} MiB), directories ${s.export.directoriesExported}, symlinks ${s.export.symlinksExported}, failures ${s.export.errors}`,
    ].join("\n"),
  listing: buildSyncSummary,
  counts: (s) => ({ count: s.export.filesExported, unit: "files", bytes: s.export.bytesExported }),
  row: (s) => ({
    kind: "sync",
    bytesDone: s.export.bytesExported,
    bytesFound: s.export.bytesExported,
    filesDone: s.export.filesExported,
    filesFound: s.export.filesExported,
    errors: s.export.errors,
    progressByBytes: false,
  }),
};
