import { lstat, realpath } from "node:fs/promises";
import { hostname, userInfo } from "node:os";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { ConsumerMessages } from "@nats-io/jetstream";
import { JobStore, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { JetStreamClient, NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { DEFAULT_HSM_XATTR, JobError, UsageError, errorCode } from "@hsmfleet/core";
import {
  JobKind,
  JobState,
  RESULTS_STREAM,
  WALK_CONSUMER,
  WORK_STREAM,
  decodeErrorBatch,
  decodeItemResult,
  decodeTransferBatch,
  decodeWalkShard,
  emptyExportCounters,
  emptyScanCounters,
  encodeItemResult,
  newJobSpec,
  newJobStatus,
  encodeWalkShard,
  mergeScanCounters,
  shardIdFor,
  subjects,
} from "@hsmfleet/protocol";
import type { ItemError, JobStatus } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import { entryToNdjson, errorToNdjson } from "./format.js";
import { newJobId } from "./job-id.js";
import { LocalLog } from "./local-log.js";
import { FleetWatch } from "./fleet-watch.js";
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
export const checkScanRoot = async (root: string): Promise<string> => {
  let resolved: string;
  try {
    resolved = await realpath(root);
    const st = await lstat(resolved);
    if (!st.isDirectory()) throw new UsageError(`scan root ${root} is not a directory`);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = errorCode(err);
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EACCES"
          ? "is not accessible (permission denied)"
          : `cannot be read (${code})`;
    throw new UsageError(`scan root ${root} ${why}`, { cause: err });
  }
  return resolved;
};

/** Starts a distributed scan and follows it to the end. */
export const runScanJob = async (options: ScanJobOptions): Promise<ScanSummary> => {
  const root = await checkScanRoot(options.root);
  const { jobs } = await ensureTopology(options.nc, options.topology);
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
      coordinator: `${hostname()}:${process.pid}`,
      listFile: options.listFile ?? "",
      errorLog: options.errorLog ?? "",
    },
  );
  const list = options.listFile ? await LocalLog.open(options.listFile) : undefined;
  const errorLog = options.errorLog ? await LocalLog.open(options.errorLog) : undefined;
  await store.create(status);
  const js = jetstream(options.nc);
  const rootShard = {
    jobId,
    path: Buffer.alloc(0),
    depth: 0,
    shardId: shardIdFor(jobId, Buffer.alloc(0)),
  };
  await js.publish(subjects.walk(jobId), encodeWalkShard(rootShard), { msgID: rootShard.shardId });
  options.logger?.info({ jobId, root }, "scan started");
  return followScan(options, store, js, status, list, errorLog);
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
  status.coordinator = `${hostname()}:${process.pid}`;
  options.logger?.info({ jobId: options.jobId, fromSeq: status.resultsSeq + 1 }, "scan resumed");
  return followScan(options, store, jetstream(options.nc), status, list, errorLog);
};

const followScan = async (
  options: Omit<ScanJobOptions, "root">,
  store: JobStore,
  js: JetStreamClient,
  status: JobStatus,
  list: LocalLog | undefined,
  errorLog: LocalLog | undefined,
): Promise<ScanSummary> => {
  const jobId = status.spec.jobId;
  const sampleLimit = options.errorSampleLimit ?? SCAN_DEFAULTS.errorSampleLimit;
  const fleet = new FleetWatch(options.nc);
  const consumer = await js.consumers.get(RESULTS_STREAM, {
    filter_subjects: subjects.resultsForJob(jobId),
    deliver_policy: status.resultsSeq > 0 ? DeliverPolicy.StartSequence : DeliverPolicy.All,
    ...(status.resultsSeq > 0 ? { opt_start_seq: status.resultsSeq + 1 } : {}),
  });
  const messages: ConsumerMessages = await consumer.consume();
  let finalState: JobState | undefined;
  let reason = "";
  const stop = (state: JobState, why: string) => {
    if (finalState !== undefined) return;
    finalState = state;
    reason = why;
    void messages.close();
  };

  const cancel = () => stop(JobState.Cancelled, "cancelled by request");
  options.signal?.addEventListener("abort", cancel, { once: true });
  const watcher = await store.watch(jobId, (s) => {
    if (s.state === JobState.Cancelling || s.state === JobState.Cancelled) cancel();
  });
  const maxDeliveries = await watchMaxDeliveries(options.nc, js, jobId, options.logger);

  const recordErrors = async (errors: ItemError[]) => {
    for (const e of errors) {
      if (status.errorSamples.length < sampleLimit) status.errorSamples.push(e);
      await errorLog?.append(errorToNdjson(e));
    }
  };
  const checkpoint = async () => {
    await list?.flush();
    await errorLog?.flush();
    status.listBytes = list?.bytes ?? 0;
    status.errorLogBytes = errorLog?.bytes ?? 0;
    status.updatedAtMs = Date.now();
    await store.put(status);
  };
  const progress = () => {
    const elapsedMs = Date.now() - status.startedAtMs;
    const s = status.scan;
    const entries = s.files + s.directories + s.symlinks + s.other;
    options.onProgress?.({
      jobId,
      entries,
      files: s.files,
      directories: s.directories,
      bytes: s.bytes,
      errors: s.errors,
      vanished: s.vanished,
      outstanding: status.published - status.completed,
      workers: fleet.liveWorkers(),
      elapsedMs,
      entriesPerSecond: elapsedMs > 0 ? (entries * 1000) / elapsedMs : 0,
    });
  };
  // Progress is read-only and may run any time; checkpoints run inside the result loop only, so the
  // recorded sequence, counters and file lengths always describe the same point.
  const checkpointEveryMs = options.checkpointIntervalMs ?? SCAN_DEFAULTS.checkpointIntervalMs;
  let lastCheckpoint = Date.now();
  const timer = setInterval(progress, checkpointEveryMs);

  try {
    if (status.published === status.completed) stop(JobState.Succeeded, "");
    for await (const m of messages) {
      if (m.subject.endsWith(".item")) {
        const r = decodeItemResult(m.data);
        mergeScanCounters(status.scan, r.scan);
        status.published += r.children;
        status.completed += 1;
        await recordErrors(r.errors);
      } else if (m.subject.endsWith(".entries")) {
        if (list)
          for (const e of decodeTransferBatch(m.data).entries) await list.append(entryToNdjson(e));
      } else if (m.subject.endsWith(".errors")) {
        await recordErrors(decodeErrorBatch(m.data).errors);
      }
      status.resultsSeq = m.seq;
      if (Date.now() - lastCheckpoint >= checkpointEveryMs) {
        await checkpoint();
        lastCheckpoint = Date.now();
      }
      if (status.completed >= status.published) {
        if (status.completed > status.published) {
          options.logger?.warn(
            { jobId, published: status.published, completed: status.completed },
            "more results than work items",
          );
        }
        stop(JobState.Succeeded, "");
      }
    }
  } finally {
    clearInterval(timer);
    watcher.stop();
    maxDeliveries.stop();
    fleet.stop();
    options.signal?.removeEventListener("abort", cancel);
  }

  if (finalState === undefined) {
    // The consumer ended without a verdict: the connection closed under us.
    throw new JobError(
      jobId,
      `lost the results stream of job ${jobId}; run "hsmfleet scan --resume ${jobId}" to continue`,
    );
  }
  if (finalState === JobState.Cancelled) {
    // Drop the queued work so the fleet does not keep walking a cancelled job.
    const jsm = await js.jetstreamManager();
    await jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(jobId) });
  }
  status.state = finalState;
  status.reason = reason;
  status.finishedAtMs = Date.now();
  await checkpoint();
  await list?.close();
  await errorLog?.close();
  progress();
  // Entry batches were only a carrier for --list; the counters stay in the job record.
  const jsm = await js.jetstreamManager();
  await jsm.streams.purge(RESULTS_STREAM, { filter: subjects.entries(jobId) });
  options.logger?.info({ jobId, state: jobStateName(finalState) }, "scan finished");
  return buildScanSummary(status);
};

/**
 * A worker killed during the last allowed delivery of a shard leaves no result. JetStream then
 * sends a MAX_DELIVERIES advisory; we publish a failed result in the worker's place, under the same
 * message id, so it is dropped if the worker had in fact reported before dying.
 */
const watchMaxDeliveries = async (
  nc: NatsConnection,
  js: JetStreamClient,
  jobId: string,
  logger: Logger | undefined,
) => {
  const jsm = await js.jetstreamManager();
  const sub = nc.subscribe(
    `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${WORK_STREAM}.${WALK_CONSUMER}`,
    {
      callback: (err, msg) => {
        if (err) return;
        void (async () => {
          const advisory = msg.json<{ stream_seq: number; deliveries: number }>();
          const stored = await jsm.streams.getMessage(WORK_STREAM, { seq: advisory.stream_seq });
          if (!stored) return;
          const shard = decodeWalkShard(stored.data);
          if (shard.jobId !== jobId) return;
          const scan = emptyScanCounters();
          scan.errors = 1;
          await js.publish(
            subjects.itemResult(jobId),
            encodeItemResult({
              jobId,
              itemId: shard.shardId,
              kind: "walk",
              children: 0,
              scan,
              errors: [
                {
                  path: shard.path,
                  operation: "walk",
                  code: "MAX_DELIVERIES",
                  message: `no worker finished this directory in ${advisory.deliveries} deliveries (workers crashed or timed out)`,
                  retryable: false,
                },
              ],
              workerId: "coordinator",
              attempt: advisory.deliveries,
              failed: true,
            }),
            { msgID: `${shard.shardId}.r` },
          );
          await jsm.streams.deleteMessage(WORK_STREAM, advisory.stream_seq, false);
        })().catch((e: unknown) =>
          logger?.warn({ err: e }, "could not record a shard that ran out of deliveries"),
        );
      },
    },
  );
  return { stop: () => sub.unsubscribe() };
};

export const jobStateName = (state: JobState): string =>
  ({
    [JobState.Pending]: "pending",
    [JobState.Running]: "running",
    [JobState.Succeeded]: "succeeded",
    [JobState.Failed]: "failed",
    [JobState.Cancelling]: "cancelling",
    [JobState.Cancelled]: "cancelled",
  })[state] ?? "unknown";

const safeUser = (): string => {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "unknown");
  }
};
