import { lstat, realpath } from "node:fs/promises";
import { hostname, userInfo } from "node:os";
import { JobStore, ensureTopology, jetstream, traceHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { DEFAULT_HSM_XATTR, JobError, UsageError, errorCode } from "@hsmfleet/core";
import {
  JobKind,
  JobState,
  jobStateName,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { followJob } from "../job-follower.js";
import { scanJobSpan } from "../job-spans.js";
import { newJobId } from "../job-id.js";
import { LocalLog } from "../local-log.js";
import { publishRootShard } from "../root-shards.js";
import { buildScanSummary } from "./scan-summary.js";
import type { ScanProgress, ScanSummary } from "./scan-summary.js";

export interface ScanJobOptions {
  nc: NatsConnection;
  /** Directory to scan; must be mounted at the same path on every worker VM. Symlinks in it are resolved once. */
  root: string;
  /** Default: `scan-<UTC time>-<random>`. */
  jobId?: string | undefined;
  /** Write every entry here as NDJSON (scan --list). */
  listFile?: string | undefined;
  /** Full error list as NDJSON. Default: none (errors are still counted and sampled). */
  errorLog?: string | undefined;
  /** xattr holding Lustre's struct hsm_attrs; "" skips HSM states. Default "trusted.hsm". */
  hsmXattr?: string | undefined;
  /** Entries per message when listing. Default 1000. */
  batchMaxEntries?: number | undefined;
  /** Errors kept in the job record and summary. Default 100. */
  errorSampleLimit?: number | undefined;
  /** How often the job record in KV is brought up to date. Default 1000 ms. */
  checkpointIntervalMs?: number | undefined;
  onProgress?: ((progress: ScanProgress) => void) | undefined;
  /** Aborting cancels the job: its queued work is purged and its record says cancelled. */
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
}

export const SCAN_DEFAULTS = {
  hsmXattr: DEFAULT_HSM_XATTR,
  batchMaxEntries: 1000,
  errorSampleLimit: 100,
  checkpointIntervalMs: 1000,
} as const;

export interface ResumeScanOptions extends Omit<
  ScanJobOptions,
  "root" | "jobId" | "hsmXattr" | "batchMaxEntries"
> {
  jobId: string;
}

/** Resolves the scan root or explains why it cannot be scanned. */
export const checkScanRoot = async (root: string, what = "scan root"): Promise<string> => {
  let resolved: string;
  try {
    resolved = await realpath(root);
    const st = await lstat(resolved);
    if (!st.isDirectory()) throw new UsageError(`${what} ${root} is not a directory`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = errorCode(err);
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "is not accessible (permission denied)"
          : `cannot be read (${code})`;
    throw new UsageError(`${what} ${root} ${why}`, { cause: err });
  }
  return resolved;
};

/** Starts a distributed scan and follows it to the end. */
export const runScanJob = (options: ScanJobOptions): Promise<ScanSummary> =>
  scanJobSpan(options, () => scanJob(options));

const scanJob = async (options: ScanJobOptions): Promise<ScanSummary> => {
  markStartup("job-begin");
  const root = await checkScanRoot(options.root);
  const { jobs } = await ensureTopology(options.nc, options.topology);
  markStartup("job-topology");
  const store = new JobStore(jobs);
  const jobId = options.jobId ?? newJobId("scan");
  const now = Date.now();
  const status = newJobStatus(
    newJobSpec({
      jobId,
      kind: JobKind.Scan,
      root: Buffer.from(root),
      listEntries: options.listFile !== undefined,
      batchMaxEntries: options.batchMaxEntries ?? SCAN_DEFAULTS.batchMaxEntries,
      hsmXattr: options.hsmXattr ?? SCAN_DEFAULTS.hsmXattr,
      createdAtMs: now,
      createdBy: `${safeUser()}@${hostname()}`,
    }),
    {
      published: 1,
      outstanding: [rootWalkShard(jobId).shardId],
      coordinator: `${hostname()}:${process.pid}`,
      listFile: options.listFile ?? "",
      errorLog: options.errorLog ?? "",
    },
  );
  const list = options.listFile ? await LocalLog.open(options.listFile) : undefined;
  const errorLog = options.errorLog ? await LocalLog.open(options.errorLog) : undefined;
  await store.create(status);
  markStartup("job-record");
  const js = jetstream(options.nc);
  const rootShard = rootWalkShard(jobId);
  await publishRootShard(js, status, rootShard, traceHeaders(options));
  markStartup("job-published");
  options.logger?.info({ jobId, root }, "scan started");
  return followScan(options, store, js, status, list, errorLog);
};

const followScan = async (
  options: Omit<ScanJobOptions, "root">,
  store: JobStore,
  js: JetStreamClient,
  status: JobStatus,
  list: LocalLog | undefined,
  errorLog: LocalLog | undefined,
): Promise<ScanSummary> => {
  const final = await followJob({
    nc: options.nc,
    js,
    store,
    status,
    list,
    errorLog,
    errorSampleLimit: options.errorSampleLimit ?? SCAN_DEFAULTS.errorSampleLimit,
    checkpointIntervalMs: options.checkpointIntervalMs ?? SCAN_DEFAULTS.checkpointIntervalMs,
    signal: options.signal,
    logger: options.logger,
    onProgress: options.onProgress
      ? (s, fleet) => options.onProgress?.(scanProgress(s, fleet.liveWorkers()))
      : undefined,
  });
  options.logger?.info(
    { jobId: final.spec.jobId, state: jobStateName(final.state) },
    "scan finished",
  );
  return buildScanSummary(final);
};

const scanProgress = (status: JobStatus, workers: number): ScanProgress => {
  const elapsedMs = Date.now() - status.startedAtMs;
  const s = status.scan;
  const entries = s.files + s.directories + s.symlinks + s.other;
  return {
    jobId: status.spec.jobId,
    entries,
    files: s.files,
    directories: s.directories,
    bytes: s.bytes,
    errors: s.errors,
    vanished: s.vanished,
    outstanding: status.published - status.completed,
    workers,
    elapsedMs,
    entriesPerSecond: elapsedMs > 0 ? (entries * 1000) / elapsedMs : 0,
  };
};

/**
 * Picks up a scan whose coordinator died: the walk went on in the fleet, results waited in the
 * results stream; counters resume from the last checkpoint and output files are cut back to it.
 */
export const resumeScanJob = async (options: ResumeScanOptions): Promise<ScanSummary> => {
  const { jobs } = await ensureTopology(options.nc, options.topology);
  const store = new JobStore(jobs);
  const status = await store.require(options.jobId);
  if (status.spec.kind !== JobKind.Scan)
    throw new JobError(options.jobId, `job ${options.jobId} is not a scan`);
  if (status.state !== JobState.Running) {
    throw new JobError(
      options.jobId,
      `job ${options.jobId} is ${jobStateName(status.state)}; only a running scan can be resumed`,
    );
  }
  const list = status.listFile ? await LocalLog.open(status.listFile, status.listBytes) : undefined;
  const errorLog = status.errorLog
    ? await LocalLog.open(status.errorLog, status.errorLogBytes)
    : undefined;
  options.logger?.info({ jobId: options.jobId, fromSeq: status.resultsSeq + 1 }, "scan resumed");
  return followScan(options, store, jetstream(options.nc), status, list, errorLog);
};

export const safeUser = (): string => {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "unknown");
  }
};
