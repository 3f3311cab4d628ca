import { rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import type { StorageTarget } from "@hsmfleet/blob";
import { jobLogContainer } from "@hsmfleet/blob/targets";
import { JobStore, RootLocks, ensureTopology, jetstream, traceHeaders } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { UsageError, normalizePrefix } from "@hsmfleet/core";
import {
  DEFAULT_CHUNK_SIZE_BYTES,
  JobKind,
  newJobSpec,
  jobLimitsOf,
  newJobStatus,
  rootWalkShard,
} from "@hsmfleet/protocol";
import type { JobStatus, JobLimits } from "@hsmfleet/protocol";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { exportJobSpan } from "../job-spans.js";
import { followJob } from "../job-follower.js";
import { jobErrors } from "../job-errors.js";
import { etaSeconds } from "../eta.js";
import { buildExportSummary } from "./export-summary.js";
import type { ExportProgress, ExportSummary } from "./export-summary.js";
import { writeJobLogs } from "../job-logs.js";
import { claimRoot } from "../root-claim.js";
import { newJobId } from "../job-id.js";
import { LocalLog } from "../local-log.js";
import { safeUser } from "../scan/scan-job.js";
import { checkExportSource, publishSingleFileBatch, singleFileBatch } from "./export-source.js";
import { publishRootShard } from "../root-shards.js";

export interface ExportJobOptions {
  /**
   * Fleet-wide caps of the job: payload bytes per second and storage requests per second (0 or
   * undefined = none). Each live worker takes an equal share (docs/export.md, "Concurrency").
   */
  limits?: Partial<JobLimits> | undefined;
  nc: NatsConnection;
  /** Directory to export; mounted at the same path on every worker VM. */
  root: string;
  /** Target container (created if missing). */
  container: string;
  /** Name prefix inside the container ("" = none). */
  prefix?: string | undefined;
  /** The coordinator's own credentials: to create the containers and write the job's logs. */
  storage: StorageTarget;
  /** 0 = fail on the first error (default), -1 = unlimited, N = fail after N. */
  maxErrors?: number | undefined;
  /** Receives <job>/summary.json and <job>/errors.ndjson. Default `<container>-logs`. */
  logContainer?: string | undefined;
  /** Preferred block size for large files. Default 8 MiB (grown to fit 50,000 blocks). */
  blockSizeBytes?: number | undefined;
  /** Bounds of one transfer batch. Defaults 1000 entries, 256 MiB. */
  batchMaxEntries?: number | undefined;
  batchMaxBytes?: number | undefined;
  /** Files larger than this are uploaded in chunks that any worker takes. Default 256 MiB. */
  chunkSizeBytes?: number | undefined;
  /**
   * Local NDJSON file receiving every error; uploaded to the logging container at the end.
   * Default: a file in the OS temp dir, removed after the upload.
   */
  errorLog?: string | undefined;
  jobId?: string | undefined;
  checkpointIntervalMs?: number | undefined;
  onProgress?: ((progress: ExportProgress) => void) | undefined;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export const EXPORT_DEFAULTS = {
  maxErrors: 0,
  blockSizeBytes: 8 * 1024 * 1024,
  batchMaxEntries: 1000,
  batchMaxBytes: 256 * 1024 * 1024,
  chunkSizeBytes: DEFAULT_CHUNK_SIZE_BYTES,
} as const;

const exportProgress = (s: JobStatus, workers: number): ExportProgress => {
  const elapsedMs = Date.now() - s.startedAtMs;
  const e = s.export;
  const bytesPerSecond = elapsedMs > 0 ? (e.bytesExported * 1000) / elapsedMs : 0;
  return {
    jobId: s.spec.jobId,
    filesDone: e.filesExported,
    filesQueued: e.filesQueued,
    filesFound: e.filesFound,
    bytesDone: e.bytesExported,
    bytesQueued: e.bytesQueued,
    skipped: e.skipped,
    errors: jobErrors(s),
    workers,
    elapsedMs,
    bytesPerSecond,
    etaSeconds: etaSeconds({
      elapsedSeconds: elapsedMs / 1000,
      filesDone: e.filesExported,
      filesTotal: e.filesQueued,
      bytesDone: e.bytesExported,
      bytesTotal: e.bytesQueued,
    }),
  };
};

/**
 * Exports a tree to a blob container in AMLFS format across the fleet. Only one import/export job
 * runs per source root: a second one is refused, unless the first one's coordinator is gone, in
 * which case this run takes the job over and finishes it (re-running the same command resumes).
 */
export const runExportJob = (options: ExportJobOptions): Promise<ExportSummary> =>
  exportJobSpan(options, () => exportJob(options));

const exportJob = async (options: ExportJobOptions): Promise<ExportSummary> => {
  const source = await checkExportSource(options.root);
  const root = source.root;
  const rootBytes = Buffer.from(root);
  if (!options.container) throw new UsageError("export needs --container NAME");
  const prefix = normalizePrefix(options.prefix);
  const logContainerName = jobLogContainer(options.container, options.logContainer);
  markStartup("job-begin");
  const { openContainer } = await import("@hsmfleet/blob");
  const target = openContainer(options.storage, options.container);
  const logContainer = openContainer(options.storage, logContainerName);
  // The stream topology and both containers at once: none needs another (one round trip to the
  // storage account instead of two after NATS's).
  const [{ jobs, locks }] = await Promise.all([
    ensureTopology(options.nc, options.topology).then((t) => {
      markStartup("job-topology");
      return t;
    }),
    target.ensureExists(),
    logContainer.ensureExists(),
  ]);
  markStartup("job-containers");
  const store = new JobStore(jobs);
  const rootLocks = new RootLocks(locks);

  const jobId = options.jobId ?? newJobId("export");
  const claim = await claimRoot({
    nc: options.nc,
    store,
    locks: rootLocks,
    root: source.lockPath,
    jobId,
    what: "an export",
    logger: options.logger,
    sameJob: (holder) =>
      holder.spec.kind === JobKind.Export &&
      holder.spec.container === options.container &&
      normalizePrefix(holder.spec.prefix) === prefix,
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
    const now = Date.now();
    // One file: its transfer batch (stat'ed beneath the root's fd) is the job's only work item.
    const single =
      source.file === undefined
        ? undefined
        : await singleFileBatch(jobId, { ...source, file: source.file }).catch(
            async (err: unknown) => {
              await claim.release();
              throw err;
            },
          );
    const firstItem = single?.batchId ?? rootWalkShard(jobId).shardId;
    status = newJobStatus(
      newJobSpec({
        jobId,
        kind: JobKind.Export,
        root: rootBytes,
        createdAtMs: now,
        createdBy: `${safeUser()}@${hostname()}`,
        maxErrors: options.maxErrors ?? EXPORT_DEFAULTS.maxErrors,
        container: options.container,
        prefix,
        blockSize: options.blockSizeBytes ?? EXPORT_DEFAULTS.blockSizeBytes,
        logContainer: logContainerName,
        batchMaxEntries: options.batchMaxEntries ?? EXPORT_DEFAULTS.batchMaxEntries,
        batchMaxBytes: options.batchMaxBytes ?? EXPORT_DEFAULTS.batchMaxBytes,
        chunkSize: options.chunkSizeBytes ?? EXPORT_DEFAULTS.chunkSizeBytes,
        limits: jobLimitsOf(options.limits),
        hsmXattr: "",
      }),
      { published: 1, outstanding: [firstItem], errorLog: errorLogPath },
    );
    if (single !== undefined) {
      status.scan.files = 1;
      status.scan.bytes = single.entry.size;
      status.export.filesFound = status.export.filesQueued = 1;
      status.export.bytesFound = status.export.bytesQueued = single.entry.size;
    }
    try {
      await store.create(status);
      if (single !== undefined) {
        await publishSingleFileBatch(jetstream(options.nc), status, single, traceHeaders(options));
      } else {
        await publishRootShard(
          jetstream(options.nc),
          status,
          rootWalkShard(jobId),
          traceHeaders(options),
        );
      }
    } catch (err) {
      await claim.release();
      throw err;
    }
    options.logger?.info({ jobId, root, container: options.container, prefix }, "export started");
  }
  markStartup("job-published");

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
        ? (s, fleet) => options.onProgress?.(exportProgress(s, fleet.liveWorkers()))
        : undefined,
    });
    markStartup("job-finished");
    const summary = buildExportSummary(final, resumed);
    await writeJobLogs(
      logContainer,
      summary.jobId,
      summary,
      [["errors.ndjson", final.errorLog]],
      options.logger,
    );
    markStartup("job-logs");
    if (temporaryLog) {
      await rm(errorLogPath, { force: true });
      summary.errorLog = null;
    }
    return summary;
  } finally {
    await claim.release();
  }
};
