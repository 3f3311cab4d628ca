import { JobKind, emptyAutoImportJobCounters, jobStateName } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { JobReport } from "../job-report.js";

const isoOrNull = (ms: number): string | null => (ms > 0 ? new Date(ms).toISOString() : null);

/** `hsmfleet status --json` of an auto-import service (AMLFS autoImportJobs field names). */
export const buildAutoImportSummary = (s: JobStatus) => {
  const {
    autoimportState,
    lastEventConsumedMs,
    lastFullySynchronizedMs,
    msBehind,
    messagesInFlight,
    roundsInFlight,
    itemsInFlight,
    ...counters
  } = s.autoimport ?? emptyAutoImportJobCounters();
  return {
    jobId: s.spec.jobId,
    state: jobStateName(s.state),
    autoimportState,
    root: s.spec.root.toString(),
    container: s.spec.container,
    ...counters,
    lastChangeFeedEventConsumedTime: isoOrNull(lastEventConsumedMs),
    lastTimeFullySynchronized: isoOrNull(lastFullySynchronizedMs),
    // The backlog the service holds: a queue receiver cannot see the queue's depth.
    backlog: { messagesInFlight, roundsInFlight, itemsInFlight, secondsBehind: msBehind / 1000 },
  };
};

export const formatAutoImportSummary = (s: JobStatus): string => {
  const j = buildAutoImportSummary(s);
  return [
    `autoimport ${j.jobId}: ${j.autoimportState || j.state}, container ${j.container} -> ${j.root}`,
    `  blobs walked ${j.totalBlobsWalked}, imported ${j.totalBlobsImported} (files ${j.importedFiles}, directories ${j.importedDirectories}, symlinks ${j.importedSymlinks})`,
    `  deletions ${j.deletions} (not made: ${j.deletionsSkipped}), conflicts ${j.totalConflicts}, errors ${j.totalErrors}`,
    `  messages ${j.messagesConsumed} (duplicates ${j.duplicates}, stale ${j.staleEvents}, dead-lettered ${j.deadLettered}, blobs gone ${j.vanished})`,
    `  last event consumed ${j.lastChangeFeedEventConsumedTime ?? "-"}, last fully synchronized ${j.lastTimeFullySynchronized ?? "-"}`,
    `  backlog in hand: messages ${j.backlog.messagesInFlight}, rounds ${j.backlog.roundsInFlight}, work items ${j.backlog.itemsInFlight}; oldest in Service Bus for ${j.backlog.secondsBehind.toFixed(1)} s`,
  ].join("\n");
};

export const autoImportReport: JobReport = {
  kind: JobKind.AutoImport,
  name: "autoimport",
  summary: buildAutoImportSummary,
  text: formatAutoImportSummary,
  listing: buildAutoImportSummary,
  counts: (s) => ({ count: s.autoimport?.totalBlobsImported ?? 0, unit: "blobs", bytes: 0 }),
  row: (s) => ({
    kind: "autoimport",
    bytesDone: 0,
    bytesFound: 0,
    filesDone: s.autoimport?.totalBlobsImported ?? 0,
    // The events in hand (received, not applied yet) count as found: the row shows the backlog.
    filesFound: (s.autoimport?.totalBlobsWalked ?? 0) + (s.autoimport?.messagesInFlight ?? 0),
    errors: s.autoimport?.totalErrors ?? 0,
    progressByBytes: false,
  }),
};
