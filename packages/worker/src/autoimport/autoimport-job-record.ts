/**
 * The job record of an `hsmfleet autoimport` service (job id = the service name, kind
 * autoimport): its status in the job store, so `hsmfleet status`, `hsmfleet jobs` and the
 * dashboard show it while it runs and after it stops, as they show a sync service.
 */
import { JobKind, JobState, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type {
  AutoImportJobCounters,
  ConflictMode,
  ImportMode,
  JobSpec,
  JobStatus,
} from "@hsmfleet/protocol";
import type { AutoImportStatus } from "./autoimport-status.js";

const msOf = (iso: string): number => {
  const ms = iso ? Date.parse(iso) : 0;
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
};

const countersOf = (s: AutoImportStatus): AutoImportJobCounters => ({
  autoimportState: s.state,
  totalBlobsWalked: s.totalBlobsWalked,
  totalBlobsImported: s.totalBlobsImported,
  importedFiles: s.importedFiles,
  importedDirectories: s.importedDirectories,
  importedSymlinks: s.importedSymlinks,
  preexistingFiles: s.preexistingFiles,
  preexistingDirectories: s.preexistingDirectories,
  preexistingSymlinks: s.preexistingSymlinks,
  totalConflicts: s.totalConflicts,
  totalErrors: s.totalErrors,
  deletions: s.deletions,
  deletionsSkipped: s.deletionsSkipped,
  vanished: s.vanished,
  messagesConsumed: s.messagesConsumed,
  duplicates: s.duplicates,
  staleEvents: s.staleEvents,
  deadLettered: s.deadLettered,
  lastEventConsumedMs: msOf(s.lastChangeFeedEventConsumedTime),
  lastFullySynchronizedMs: msOf(s.lastTimeFullySynchronized),
  messagesInFlight: s.messagesInFlight ?? 0,
  roundsInFlight: s.roundsInFlight ?? 0,
  itemsInFlight: s.itemsInFlight ?? 0,
  msBehind: s.msBehind ?? 0,
});

export interface AutoImportSpecFields {
  name: string;
  target: string;
  container: string;
  mode: ImportMode;
  conflict: ConflictMode;
  archiveId: number;
  backend: string;
  hsmXattr: string;
  startedAtMs: number;
}

/**
 * The job spec of one run of a service: what its workers apply changes with (target root,
 * container, import mode and conflict mode, HSM backend) and a fresh item key sealing this run's
 * work items (items a previous run left queued are refused as unsolicited).
 */
export const autoImportJobSpec = (f: AutoImportSpecFields): JobSpec => {
  const spec = newJobSpec({
    jobId: f.name,
    kind: JobKind.AutoImport,
    root: Buffer.from(f.target),
    container: f.container,
    createdAtMs: f.startedAtMs,
    backend: f.backend,
    hsmXattr: f.hsmXattr,
  });
  spec.import = { ...spec.import, mode: f.mode, conflict: f.conflict, archiveId: f.archiveId };
  return spec;
};

/** The service's job record for `status`, begun at `startedAtMs` (this run's start). */
export const autoImportJobRecord = (
  s: AutoImportStatus,
  startedAtMs: number,
  spec?: JobSpec,
): JobStatus => {
  const ended = s.state === "Disabled" || s.state === "Failed";
  const updatedAtMs = msOf(s.updatedAt) || Date.now();
  return newJobStatus(
    spec ??
      newJobSpec({
        jobId: s.name,
        kind: JobKind.AutoImport,
        root: Buffer.from(s.target),
        container: s.container,
        createdAtMs: startedAtMs,
      }),
    {
      state: s.state === "Failed" ? JobState.Failed : ended ? JobState.Succeeded : JobState.Running,
      updatedAtMs,
      finishedAtMs: ended ? updatedAtMs : 0,
      reason:
        s.state === "Failed" ? "more errors than --max-errors" : ended ? "autoimport stopped" : "",
      autoimport: countersOf(s),
    },
  );
};
