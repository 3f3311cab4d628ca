import { JobKind, jobStateName } from "@hsmfleet/protocol";
import type { JobStatus, SyncJobCounters } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";

const EMPTY: SyncJobCounters = {
  source: "",
  syncState: "",
  recordsRead: 0,
  recordsApplied: 0,
  filesExported: 0,
  bytesExported: 0,
  directoriesExported: 0,
  symlinksExported: 0,
  metadataUpdates: 0,
  renames: 0,
  deletions: 0,
  deletionsPending: 0,
  failures: 0,
  backlog: 0,
  msBehind: 0,
  lastFullySynchronizedMs: 0,
};

/** `hsmfleet status --json` of a sync service (AMLFS autoExportJobs-like fields). */
export const buildSyncSummary = (s: JobStatus) => {
  const c = s.sync ?? EMPTY;
  return {
    jobId: s.spec.jobId,
    state: jobStateName(s.state),
    syncState: c.syncState,
    source: c.source,
    root: s.spec.root.toString(),
    container: s.spec.container,
    prefix: s.spec.prefix,
    recordsRead: c.recordsRead,
    recordsApplied: c.recordsApplied,
    filesExported: c.filesExported,
    mibExported: Math.round((c.bytesExported / 1048576) * 10) / 10,
    bytesExported: c.bytesExported,
    directoriesExported: c.directoriesExported,
    symlinksExported: c.symlinksExported,
    metadataUpdates: c.metadataUpdates,
    renames: c.renames,
    deletions: c.deletions,
    deletionsPending: c.deletionsPending,
    failures: c.failures,
    backlog: c.backlog,
    secondsBehind: c.msBehind / 1000,
    lastFullySynchronized:
      c.lastFullySynchronizedMs > 0 ? new Date(c.lastFullySynchronizedMs).toISOString() : null,
  };
};

export const formatSyncSummary = (s: JobStatus): string => {
  const j = buildSyncSummary(s);
  return [
    `sync ${j.jobId}: ${j.syncState || j.state} (${j.source}) ${j.root} -> ${j.container}${j.prefix ? `/${j.prefix}` : ""}`,
    `  records read ${j.recordsRead}, applied ${j.recordsApplied}; backlog ${j.backlog} (${j.secondsBehind.toFixed(1)} s behind); last fully synchronized ${j.lastFullySynchronized ?? "not yet"}`,
    `  files exported ${j.filesExported} (${j.mibExported} MiB), directories ${j.directoriesExported}, symlinks ${j.symlinksExported}, metadata updates ${j.metadataUpdates}, renames ${j.renames}, deletions ${j.deletions} (${j.deletionsPending} waiting), failures ${j.failures}`,
  ].join("\n");
};

export const syncReport: JobReport = {
  kind: JobKind.Sync,
  name: "sync",
  summary: buildSyncSummary,
  text: formatSyncSummary,
  listing: buildSyncSummary,
  counts: (s) => ({
    count: s.sync?.recordsApplied ?? 0,
    unit: "records",
    bytes: s.sync?.bytesExported ?? 0,
  }),
  row: (s) => ({
    kind: "sync",
    bytesDone: s.sync?.bytesExported ?? 0,
    bytesFound: s.sync?.bytesExported ?? 0,
    filesDone: s.sync?.recordsApplied ?? 0,
    filesFound: s.sync?.recordsRead ?? 0,
    errors: s.sync?.failures ?? 0,
    progressByBytes: false,
  }),
};
