import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { rm } from "node:fs/promises";
import {
  JobStore,
  RootLocks,
  deleteJobConsumer,
  ensureJobConsumer,
  ensureTopology,
  jetstream,
} from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { UsageError, normalizePrefix } from "@hsmfleet/core";
import {
  JobKind,
  newJobSpec,
  jobLimitsOf,
  newJobStatus,
  restoreConsumer,
  rootWalkShard,
  subjects,
} from "@hsmfleet/protocol";
import type { JobStatus, JobLimits } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { followJob } from "../job-follower.js";
import { jobErrors } from "../job-errors.js";
import { etaSeconds } from "../eta.js";
import { buildRestoreSummary } from "./restore-summary.js";
import type { RestoreProgress, RestoreSummary } from "./restore-summary.js";
import { newJobId } from "../job-id.js";
import { LocalLog } from "../local-log.js";
import { claimRoot } from "../root-claim.js";
import { checkScanRoot, safeUser } from "../scan/scan-job.js";
import { publishRootShard } from "../root-shards.js";

export const RESTORE_DEFAULTS = {
  /** Files being restored at once across the whole fleet (AMLFS's guidance: 1,000–5,000). */
  maxInflight: 2000,
  /** Files per restore work item. */
  restoreBatch: 50,
  maxErrors: -1,
  hsmXattr: "trusted.hsm",
  archiveId: 1,
} as const;

export interface RestoreJobOptions {
  /**
   * Fleet-wide caps of the job: payload bytes per second and storage requests per second (0 or
   * undefined = none). Each live worker takes an equal share (docs/export.md, "Concurrency").
   */
  limits?: Partial<JobLimits> | undefined;
  nc: NatsConnection;
  /** Directory whose released files are restored. */
  path: string;
  maxInflight?: number | undefined;
  restoreBatch?: number | undefined;
  hsmXattr?: string | undefined;
  /**
   * "hsm-emulation" (default here: the workers download the data themselves) or "lustre" (the
   * workers issue lfs hsm_restore in batches and wait for the copytool).
   */
  backend?: "hsm-emulation" | "lustre" | undefined;
  /** Fallback for files without a recorded archive location: container, prefix and the directory that maps to the container root. */
  container?: string | undefined;
  prefix?: string | undefined;
  fsRoot?: string | undefined;
  maxErrors?: number | undefined;
  errorLog?: string | undefined;
  jobId?: string | undefined;
  checkpointIntervalMs?: number | undefined;
  onProgress?: ((progress: RestoreProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export const restoreProgress = (s: JobStatus, workers: number): RestoreProgress => {
  const elapsed = Math.max(1e-3, (Date.now() - s.startedAtMs) / 1000);
  const r = s.restore;
  const bytesPerSecond = r.bytesRestored / elapsed;
  return {
    jobId: s.spec.jobId,
    filesRestored: r.filesRestored,
    filesFound: r.filesFound,
    bytesRestored: r.bytesRestored,
    bytesFound: r.bytesFound,
    filesPerSecond: r.filesRestored / elapsed,
    bytesPerSecond,
    etaSeconds: etaSeconds({
      elapsedSeconds: elapsed,
      filesDone: r.filesRestored,
      filesTotal: r.filesFound,
      bytesDone: r.bytesRestored,
      bytesTotal: r.bytesFound,
    }),
    errors: jobErrors(s),
    workers,
    walking: s.scan.directories === 0 || s.published > s.completed,
  };
};

/**
 * Restores every released file under a path across the fleet. The walk finds them; restore items
 * go to the job's own consumer, whose max_ack_pending keeps at most --max-inflight files in flight
 * across all workers together (the server enforces it, however many workers pull).
 */
export const runRestoreJob = async (options: RestoreJobOptions): Promise<RestoreSummary> => {
  const root = await checkScanRoot(options.path, "restore path");
  const maxInflight = options.maxInflight ?? RESTORE_DEFAULTS.maxInflight;
  if (!Number.isInteger(maxInflight) || maxInflight < 1)
    throw new UsageError("--max-inflight must be an integer ≥ 1");
  const restoreBatch = Math.min(maxInflight, options.restoreBatch ?? RESTORE_DEFAULTS.restoreBatch);
  const fsRoot = options.fsRoot ? await checkScanRoot(options.fsRoot, "--fs-root") : "";
  if (fsRoot && !options.container) throw new UsageError("--fs-root needs --container");
  const prefix = normalizePrefix(options.prefix);
  const { jsm, jobs, locks, topology } = await ensureTopology(options.nc, options.topology);
  const store = new JobStore(jobs);
  const jobId = options.jobId ?? newJobId("restore");
  const claim = await claimRoot({
    nc: options.nc,
    store,
    locks: new RootLocks(locks),
    root,
    jobId,
    what: "a restore",
    logger: options.logger,
    sameJob: (holder) => holder.spec.kind === JobKind.Restore,
  });
  let status: JobStatus | undefined = claim.resumed;
  const resumed = status !== undefined;
  const errorLogPath =
    status?.errorLog || options.errorLog || join(tmpdir(), `hsmfleet-${jobId}-errors.ndjson`);
  const temporaryLog = !status?.errorLog && !options.errorLog;
  const errorLog = await LocalLog.open(
    errorLogPath,
    resumed ? (status?.errorLogBytes ?? 0) : undefined,
    temporaryLog,
  );
  if (!status) {
    status = newJobStatus(
      newJobSpec({
        jobId,
        kind: JobKind.Restore,
        root: Buffer.from(root),
        createdAtMs: Date.now(),
        createdBy: `${safeUser()}@${hostname()}`,
        maxErrors: options.maxErrors ?? RESTORE_DEFAULTS.maxErrors,
        backend: options.backend ?? "hsm-emulation",
        hsmXattr: options.hsmXattr ?? RESTORE_DEFAULTS.hsmXattr,
        container: options.container ?? "",
        prefix,
        limits: jobLimitsOf(options.limits),
        import: {
          mode: "full",
          conflict: "fail",
          archiveId: RESTORE_DEFAULTS.archiveId,
          prefixes: [],
          maxInflight,
          restoreBatch,
          fsRoot: Buffer.from(fsRoot),
        },
      }),
      { published: 1, outstanding: [rootWalkShard(jobId).shardId], errorLog: errorLogPath },
    );
  }
  const consumer = restoreConsumer(status.spec.jobId);
  try {
    // The consumer exists before workers can see the job as running.
    await ensureJobConsumer(jsm, {
      name: consumer,
      filterSubject: subjects.restore(status.spec.jobId),
      maxAckPending: Math.max(1, Math.floor(maxInflight / restoreBatch)),
      ackWaitMs: topology.ackWaitMs,
      maxDeliver: topology.maxDeliver,
    });
    if (!resumed) {
      await store.create(status);
      const rootShard = rootWalkShard(jobId);
      await publishRootShard(jetstream(options.nc), status, rootShard);
      options.logger?.info({ jobId, root, maxInflight }, "restore started");
    }
  } catch (err) {
    await claim.release();
    throw err;
  }
  try {
    const final = await followJob({
      nc: options.nc,
      js: jetstream(options.nc),
      store,
      status,
      errorLog,
      checkpointIntervalMs: options.checkpointIntervalMs,
      signal: options.signal,
      logger: options.logger,
      onProgress: options.onProgress
        ? (s, fleet) => options.onProgress?.(restoreProgress(s, fleet.liveWorkers()))
        : undefined,
    });
    const summary = buildRestoreSummary(final, resumed);
    if (temporaryLog) {
      await rm(errorLogPath, { force: true });
      summary.errorLog = null;
    }
    return summary;
  } finally {
    await deleteJobConsumer(jsm, consumer).catch(() => undefined);
    await claim.release();
  }
};
