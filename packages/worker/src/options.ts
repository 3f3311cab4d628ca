import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@hsmfleet/bus";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import type { Logger } from "@hsmfleet/telemetry";
import type { WalkShard } from "@hsmfleet/protocol";
import { UsageError } from "@hsmfleet/core";
import type { AttemptPolicy } from "./runtime/attempts.js";
import { posixNamespace } from "./walk/walk-namespace.js";
import type { WalkNamespace } from "./walk/walk-namespace.js";

/**
 * **Benchmarks only** (test/bench/control-plane.bench.ts): no CLI flag or environment variable
 * sets these; a worker gets them only when created in code with `bench`.
 */
export interface BenchSeams {
  /** The tree walks list instead of the file system (`SyntheticNamespace`). Default: posix. */
  namespace?: WalkNamespace | undefined;
  /** Export lists no blobs and discards every entry in-process: no storage request. Default false. */
  nullTarget?: boolean | undefined;
  /** With the null target: each file takes this long, as a stand-in for its transfer. Default 0. */
  nullTargetFileMs?: number | undefined;
}

/** Extension points, called around each work item (tests use them to inject faults). */
export interface WorkerHooks {
  /** Before a walk shard's directory is opened. */
  beforeWalkShard?: ((shard: WalkShard) => Promise<void> | void) | undefined;
  /** Just before a shard's final result is published (tests use it to delay results). */
  beforeWalkResult?: ((shard: WalkShard) => Promise<void> | void) | undefined;
  /**
   * A shard's result (or spawn notice) was published and its `index`-th held child is about to
   * be: the window in which a killed worker leaves children declared but unpublished. Throwing
   * abandons the item there (redelivered as after a kill).
   */
  beforeHeldChild?: ((shard: WalkShard, index: number) => Promise<void> | void) | undefined;
  /** After a shard's children and results were published, before the ack. Throwing makes the item be redelivered. */
  afterWalkShard?: ((shard: WalkShard) => Promise<void> | void) | undefined;
}

export interface WorkerOptions {
  /** A connected NATS client. The worker does not close it. */
  nc: NatsConnection;
  /** Unique per process. Default: `<vmName>-<pid>-<random>`. */
  workerId?: string | undefined;
  /** The VM this worker runs on, shown in heartbeats. Default: the host name. */
  vmName?: string | undefined;
  /** Work items in flight at once. Default 16. */
  concurrency?: number | undefined;
  /** Entries per directory read from the file system. Default 4096. */
  readBatchSize?: number | undefined;
  /** Heartbeat period. Default 5000 ms. */
  heartbeatIntervalMs?: number | undefined;
  /** How often the work done by items in flight is reported to their job's coordinator. Default 1000 ms. */
  progressIntervalMs?: number | undefined;
  /** How long shutdown() waits for in-flight items before abandoning them to redelivery. Default 30,000 ms. */
  shutdownGraceMs?: number | undefined;
  /**
   * This worker's own storage credentials (connection string, account URL with managed identity,
   * or SAS URL). Job messages never carry secrets. Without it the worker takes no export work.
   */
  storage?: StorageTarget | undefined;
  /** Transfer batches in flight at once. Default 4. */
  transferConcurrency?: number | undefined;
  /** Files uploaded at once within one batch. Default 8. */
  fileConcurrency?: number | undefined;
  /** Blocks in flight per large file. Default 8. */
  blockConcurrency?: number | undefined;
  /**
   * Storage data requests (Put Blob, Put Block, ranged GETs) in flight at once, shared by every
   * file, chunk and job of this worker: "auto" (default) adapts it between 4 and
   * `maxRequestConcurrency` (azcopy's AUTO: grow while throughput rises, back off on 429/503 or
   * climbing latency); a number fixes it.
   */
  requestConcurrency?: "auto" | number | undefined;
  /** Cap of the auto mode (--max-concurrency). Default 64. */
  maxRequestConcurrency?: number | undefined;
  /** Upper bound of the bytes held in block buffers by this worker. Default 512 MiB. */
  memoryBudgetBytes?: number | undefined;
  /** Source address for outgoing storage connections (one NIC of a multi-NIC VM). */
  bindAddress?: string | undefined;
  /** lfs binary for HSM jobs on the lustre backend. Default "lfs" (PATH). */
  lfsPath?: string | undefined;
  /**
   * Attempts per entry of a transfer (each attempt has the storage client's own request retries)
   * before a retryable failure goes to the job's error log. Not-retryable failures (403, missing
   * source, invalid name) are never retried. Default 3.
   */
  maxAttempts?: number | undefined;
  /** Wait before an entry's second attempt, doubled each time with jitter, capped at 30 s. Default 1000 ms. */
  retryDelayMs?: number | undefined;
  /** Storage request retries (blob client) after the first try. Default 5. */
  requestRetries?: number | undefined;
  /** First storage request retry delay, doubled per retry with jitter (cap 30 s). Default 500 ms. */
  requestRetryDelayMs?: number | undefined;
  logger?: Logger | undefined;
  hooks?: WorkerHooks | undefined;
  /**
   * Blobs of one directory level an export's compare holds at once (~150 B each); a directory
   * with more is read once per window of the sorted listing (docs/export.md, "Huge
   * directories"). Default 250,000.
   */
  listingWindowEntries?: number | undefined;
  /**
   * Transfer batches of one job the WORK stream may hold before this worker's walks wait to
   * publish more (backpressure: the walk does not run the whole tree ahead of the transfers;
   * walk/work-backlog.ts). 0: no bound. Default 4096 (~4M files at 1,000 a batch, ~200–450 MB
   * of WORK stream).
   */
  maxQueuedBatches?: number | undefined;
  /** Benchmarks only: a synthetic tree and a null blob target. Default: none (the real ones). */
  bench?: BenchSeams | undefined;
}

export const WORKER_DEFAULTS = {
  concurrency: 16,
  readBatchSize: 4096,
  heartbeatIntervalMs: 5000,
  progressIntervalMs: 1000,
  shutdownGraceMs: 30_000,
  transferConcurrency: 4,
  fileConcurrency: 8,
  blockConcurrency: 8,
  memoryBudgetBytes: 512 * 1024 * 1024,
  requestConcurrency: "auto",
  maxRequestConcurrency: 64,
  maxAttempts: 3,
  retryDelayMs: 1000,
  maxRetryDelayMs: 30_000,
  requestRetries: 5,
  requestRetryDelayMs: 500,
  listingWindowEntries: 250_000,
  maxQueuedBatches: 4096,
} as const;

export interface ResolvedWorkerOptions {
  nc: NatsConnection;
  workerId: string;
  vmName: string;
  concurrency: number;
  readBatchSize: number;
  heartbeatIntervalMs: number;
  progressIntervalMs: number;
  shutdownGraceMs: number;
  storage: StorageTarget | undefined;
  transferConcurrency: number;
  fileConcurrency: number;
  blockConcurrency: number;
  requestConcurrency: "auto" | number;
  maxRequestConcurrency: number;
  memoryBudgetBytes: number;
  bindAddress: string | undefined;
  lfsPath: string;
  attempts: AttemptPolicy;
  requestRetries: number;
  requestRetryDelayMs: number;
  logger: Logger | undefined;
  hooks: WorkerHooks;
  listingWindowEntries: number;
  maxQueuedBatches: number;
  /** Where walks list directories: `posixNamespace` unless a benchmark gave another. */
  namespace: WalkNamespace;
  /** Benchmarks only: export entries are discarded in-process (see BenchSeams). */
  nullTarget: boolean;
  nullTargetFileMs: number;
}

const atLeast = (value: number, min: number, what: string): number => {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`worker option ${what} must be an integer ≥ ${min} (got ${value})`);
  }
  return value;
};

export const resolveWorkerOptions = (o: WorkerOptions): ResolvedWorkerOptions => {
  const vmName = o.vmName ?? hostname();
  return {
    nc: o.nc,
    vmName,
    workerId: o.workerId ?? `${vmName}-${process.pid}-${randomBytes(3).toString("hex")}`,
    concurrency: o.concurrency ?? WORKER_DEFAULTS.concurrency,
    readBatchSize: o.readBatchSize ?? WORKER_DEFAULTS.readBatchSize,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? WORKER_DEFAULTS.heartbeatIntervalMs,
    progressIntervalMs: o.progressIntervalMs ?? WORKER_DEFAULTS.progressIntervalMs,
    shutdownGraceMs: o.shutdownGraceMs ?? WORKER_DEFAULTS.shutdownGraceMs,
    storage: o.storage,
    transferConcurrency: o.transferConcurrency ?? WORKER_DEFAULTS.transferConcurrency,
    fileConcurrency: o.fileConcurrency ?? WORKER_DEFAULTS.fileConcurrency,
    blockConcurrency: o.blockConcurrency ?? WORKER_DEFAULTS.blockConcurrency,
    requestConcurrency:
      o.requestConcurrency === undefined || o.requestConcurrency === "auto"
        ? WORKER_DEFAULTS.requestConcurrency
        : atLeast(o.requestConcurrency, 1, "requestConcurrency"),
    maxRequestConcurrency: atLeast(
      o.maxRequestConcurrency ?? WORKER_DEFAULTS.maxRequestConcurrency,
      1,
      "maxRequestConcurrency",
    ),
    memoryBudgetBytes: o.memoryBudgetBytes ?? WORKER_DEFAULTS.memoryBudgetBytes,
    bindAddress: o.bindAddress,
    lfsPath: o.lfsPath ?? "lfs",
    attempts: {
      maxAttempts: atLeast(o.maxAttempts ?? WORKER_DEFAULTS.maxAttempts, 1, "maxAttempts"),
      retryDelayMs: atLeast(o.retryDelayMs ?? WORKER_DEFAULTS.retryDelayMs, 0, "retryDelayMs"),
      maxRetryDelayMs: WORKER_DEFAULTS.maxRetryDelayMs,
    },
    requestRetries: atLeast(
      o.requestRetries ?? WORKER_DEFAULTS.requestRetries,
      0,
      "requestRetries",
    ),
    requestRetryDelayMs: atLeast(
      o.requestRetryDelayMs ?? WORKER_DEFAULTS.requestRetryDelayMs,
      0,
      "requestRetryDelayMs",
    ),
    logger: o.logger,
    hooks: o.hooks ?? {},
    listingWindowEntries: atLeast(
      o.listingWindowEntries ?? WORKER_DEFAULTS.listingWindowEntries,
      1,
      "listingWindowEntries",
    ),
    maxQueuedBatches: atLeast(
      o.maxQueuedBatches ?? WORKER_DEFAULTS.maxQueuedBatches,
      0,
      "maxQueuedBatches",
    ),
    namespace: o.bench?.namespace ?? posixNamespace,
    nullTarget: o.bench?.nullTarget ?? false,
    nullTargetFileMs: atLeast(o.bench?.nullTargetFileMs ?? 0, 0, "bench.nullTargetFileMs"),
  };
};
