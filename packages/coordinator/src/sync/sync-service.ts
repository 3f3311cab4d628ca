import { realpath, stat } from "node:fs/promises";
import { hostname } from "node:os";
import {
  JobStore,
  ensureJobConsumer,
  ensureSyncTopology,
  ensureTopology,
  jetstream,
} from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { BlobContainer } from "@hsmfleet/blob";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { UsageError, errorMessage, normalizePrefix } from "@hsmfleet/core";
import {
  JOB_ID_PATTERN,
  JobKind,
  JobState,
  WORK_STREAM,
  newJobSpec,
  newJobStatus,
  syncSubjects,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { observeJobProgress } from "../job-gauges.js";
import { safeUser } from "../scan/scan-job.js";
import type { ChangeSource } from "./change-source.js";
import { PosixChangeSource } from "./posix-source.js";
import { SyncLoop } from "./sync-loop.js";
import type { SyncStatusRecord } from "./sync-state.js";
import { SyncState } from "./sync-state.js";

export const SYNC_DEFAULTS = {
  /** A new or changed file is uploaded once it has been quiet this long (30 s). */
  settleMs: 30_000,
  /** A deleted entry's blob is deleted this long after (5 min). */
  removeDelayMs: 300_000,
  /** Every directory is compared with its blobs this often (1 h). */
  rescanIntervalMs: 3_600_000,
  /** Operations in one work item. */
  opsPerItem: 100,
  /** Operations in one phase (published together, applied in parallel). */
  maxPhaseOps: 5_000,
  /**
   * Phases applied at once (their paths disjoint; renames, deletions and rescans alone): the next
   * goes out while the workers still apply the previous ones.
   */
  maxPhasesInFlight: 4,
  /** A work item with no result after this long is published again (5 min). */
  itemTimeoutMs: 300_000,
  /** How often the status is written to KV. */
  statusIntervalMs: 1_000,
} as const;

export interface SyncServiceOptions {
  nc: NatsConnection;
  /** The tree to keep in step; mounted at the same path on every worker VM. */
  root: string;
  container: string;
  prefix?: string | undefined;
  /** The service's name (KV keys, change subject, job id `sync-<name>`). Default: the container's. */
  name?: string | undefined;
  /** The change source. Default: a POSIX source (inotify) on the root. */
  source?: ChangeSource | undefined;
  settleMs?: number | undefined;
  removeDelayMs?: number | undefined;
  /** Never delete blobs (as AMLFS auto-export). Default false. */
  noDelete?: boolean | undefined;
  rescanIntervalMs?: number | undefined;
  opsPerItem?: number | undefined;
  itemTimeoutMs?: number | undefined;
  /** The coordinator's credentials: to create the container and list renamed directories. */
  storage?: StorageTarget | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
  onStatus?: ((status: SyncStatusRecord) => void) | undefined;
}

/** The job record with the service's status in it (sync and export counters). */
const withSyncCounters = (job: JobStatus, s: SyncStatusRecord): JobStatus => ({
  ...job,
  updatedAtMs: s.updatedAtMs,
  export: {
    ...job.export,
    filesExported: s.filesExported,
    bytesExported: s.bytesExported,
    directoriesExported: s.directoriesExported,
    symlinksExported: s.symlinksExported,
    errors: s.failures,
  },
  sync: {
    source: s.source,
    syncState: s.state,
    recordsRead: s.recordsRead,
    recordsApplied: s.recordsApplied,
    filesExported: s.filesExported,
    bytesExported: s.bytesExported,
    directoriesExported: s.directoriesExported,
    symlinksExported: s.symlinksExported,
    metadataUpdates: s.metadataUpdates,
    renames: s.renames,
    deletions: s.deletions,
    deletionsPending: s.deletionsPending,
    failures: s.failures,
    backlog: s.backlog,
    msBehind: Math.round(s.secondsBehind * 1000),
    lastFullySynchronizedMs: s.lastFullySynchronizedMs,
  },
});

/** The default service name: the container's, with characters a subject token cannot hold replaced. */
export const syncNameFor = (container: string, prefix: string): string =>
  `${container}${prefix ? `-${prefix}` : ""}`.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 59);

/**
 * `hsmfleet sync`: keeps `container` in step with the tree until the signal aborts. Returns the
 * final status. The job record (`sync-<name>`) is live while the service runs: workers pull its
 * items from its own consumer.
 */
export const runSyncService = async (options: SyncServiceOptions): Promise<SyncStatusRecord> => {
  let root: string;
  try {
    root = await realpath(options.root);
    if (!(await stat(root)).isDirectory())
      throw new UsageError(`sync source ${root} is not a directory`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`sync source ${options.root}: ${errorMessage(err)}`);
  }
  if (!options.container) throw new UsageError("sync needs --container NAME");
  const prefix = normalizePrefix(options.prefix);
  const name = options.name ?? syncNameFor(options.container, prefix);
  const jobId = `sync-${name}`;
  if (!JOB_ID_PATTERN.test(jobId))
    throw new UsageError(`sync name "${name}": letters, digits, '-' and '_' only, at most 59`);
  let container: BlobContainer | undefined;
  if (options.storage !== undefined) {
    const { openContainer } = await import("@hsmfleet/blob");
    container = openContainer(options.storage, options.container);
    await container.ensureExists();
  }
  const { jsm, jobs, topology } = await ensureTopology(options.nc, options.topology);
  const { state: kv } = await ensureSyncTopology(options.nc);
  const store = new JobStore(jobs);
  // A fresh record (and item key) each start: items a previous run left queued are refused as
  // unsolicited and its work is redone from the checkpoint.
  const status: JobStatus = newJobStatus(
    newJobSpec({
      jobId,
      kind: JobKind.Sync,
      root: Buffer.from(root),
      createdAtMs: Date.now(),
      createdBy: `${safeUser()}@${hostname()}`,
      maxErrors: -1,
      container: options.container,
      prefix,
    }),
  );
  await jsm.streams
    .purge(WORK_STREAM, { filter: syncSubjects.batch(jobId) })
    .catch(() => undefined);
  await ensureJobConsumer(jsm, {
    name: syncSubjects.consumer(jobId),
    filterSubject: syncSubjects.batch(jobId),
    maxAckPending: 1_000,
    ackWaitMs: topology.ackWaitMs,
    maxDeliver: topology.maxDeliver,
  });
  await store.put(status);
  const state = new SyncState(kv, name);
  await state.loadDeletes();
  const source = options.source ?? new PosixChangeSource(root, options.logger);
  const loop = new SyncLoop({
    nc: options.nc,
    js: jetstream(options.nc),
    job: status,
    name,
    root,
    prefix,
    source,
    state,
    container,
    settleMs: options.settleMs ?? SYNC_DEFAULTS.settleMs,
    removeDelayMs: options.removeDelayMs ?? SYNC_DEFAULTS.removeDelayMs,
    noDelete: options.noDelete ?? false,
    rescanIntervalMs: options.rescanIntervalMs ?? SYNC_DEFAULTS.rescanIntervalMs,
    opsPerItem: options.opsPerItem ?? SYNC_DEFAULTS.opsPerItem,
    maxPhaseOps: SYNC_DEFAULTS.maxPhaseOps,
    maxPhasesInFlight: SYNC_DEFAULTS.maxPhasesInFlight,
    itemTimeoutMs: options.itemTimeoutMs ?? SYNC_DEFAULTS.itemTimeoutMs,
    statusIntervalMs: SYNC_DEFAULTS.statusIntervalMs,
    logger: options.logger,
    onStatus: (s) => {
      options.onStatus?.(s);
      // The job record carries the status too: `hsmfleet status`, `jobs`, the dashboard; and the
      // hsmfleet_job_* metrics (files = records applied/read, bytes, errors = failures).
      Object.assign(live, withSyncCounters(status, s));
      void store.put(withSyncCounters(status, s)).catch(() => undefined);
    },
  });
  const live: JobStatus = { ...status };
  const stopMetrics = observeJobProgress(live);
  options.logger?.info({ jobId, root, container: options.container, prefix }, "sync started");
  let final: SyncStatusRecord;
  try {
    final = await loop.run(options.signal ?? new AbortController().signal);
  } finally {
    stopMetrics();
    const last = loop.status();
    await store
      .put({
        ...withSyncCounters(status, last),
        state: last.state === "failed" ? JobState.Failed : JobState.Succeeded,
        finishedAtMs: Date.now(),
        reason: last.state === "failed" ? last.lastError : "sync stopped",
      })
      .catch(() => undefined);
  }
  return final;
};
