import type { BlobContainer } from "@hsmfleet/blob";
import type { MemoryBudget } from "@hsmfleet/blob/targets";
import type {
  ChunkTracker,
  JetStreamClient,
  JobStore,
  JsMsg,
  WorkConsumerOptions,
} from "@hsmfleet/bus";
import type { Chunk, JobKind, JobStatus, TransferBatch, WalkShard } from "@hsmfleet/protocol";
import type { WorkItemRules } from "../item-checks.js";
import type { ResolvedWorkerOptions } from "../options.js";
import type { WalkContext } from "../walk/walk-shard.js";
import type { JobCache } from "./job-cache.js";
import type { ItemScope, WorkItem } from "./run-item.js";
import type { TransferContext } from "./transfer-batch.js";
import type { WorkerStats } from "./worker-stats.js";

/** A consumer's settings as the server has them (another process may have created it). */
export interface ConsumerLimits {
  ackWaitMs: number;
  maxDeliver: number;
}

/** Log hooks of a pull loop: items handed back, redelivered, a consumer lost. */
export type ConsumerLogging = Pick<WorkConsumerOptions, "onError" | "onRedelivery" | "onLost">;

/** What a worker lends every job kind: connections, limits, shared caches and its bookkeeping. */
export interface KindContext {
  readonly options: ResolvedWorkerOptions;
  readonly js: JetStreamClient;
  /** Walk items (consumer `walk`). */
  readonly walk: WalkContext;
  /** Transfer items (consumer `transfer`, and restore's per-job consumers). */
  readonly transfer: TransferContext;
  /** Chunk items (consumer `chunk`). */
  readonly chunk: TransferContext;
  readonly transferLimits: ConsumerLimits;
  /** Per large file, the chunks done (KV). */
  readonly chunks: ChunkTracker;
  readonly budget: MemoryBudget;
  readonly jobs: JobCache;
  readonly jobStore: JobStore;
  readonly stats: WorkerStats;
  /** Stops pulling new items (shutdown step 1). */
  readonly pullSignal: AbortSignal;
  /** Aborts in-flight work (shutdown after the grace period, or abort()). */
  readonly abortSignal: AbortSignal;
  /** The job's container, through this worker's credentials and the job's limits. */
  container(job: JobStatus): Promise<BlobContainer>;
  /** Another container of the same account (restore reads each stub's own). */
  containerNamed(name: string, job: JobStatus): Promise<BlobContainer>;
  /** Runs one item with the bookkeeping every kind shares (see runWorkItem). */
  runItem(
    msg: JsMsg,
    maxDeliver: number,
    jobId: string,
    item: WorkItem,
    work: (job: JobStatus, scope: ItemScope) => Promise<void>,
  ): Promise<void>;
  /**
   * Decodes and checks a work item against its job (admit-item.ts); undefined when it was refused
   * (terminated, logged, recorded in the job's error log).
   */
  admit<T extends { jobId: string }>(msg: JsMsg, rules: WorkItemRules<T>): Promise<T | undefined>;
  /** Log hooks for a pull loop of these items. */
  logging(kind: WorkItem["kind"], limits: ConsumerLimits): ConsumerLogging;
}

/**
 * Handles one item of a shared consumer for a job of this kind (the job is live); `scope` is the
 * item's view of the worker (its progress, and a signal that also aborts on the job's cancel).
 */
export type ItemHandler<T> = (
  msg: JsMsg,
  item: T,
  job: JobStatus,
  scope: ItemScope,
) => Promise<void>;

/** What a job kind does on a worker, made once per worker run (it may keep per-worker state). */
export interface KindHandlers {
  /** Walk shards of this kind's jobs (consumer `walk`). */
  walk?: ItemHandler<WalkShard> | undefined;
  /** Transfer batches of this kind's jobs (consumer `transfer`). */
  transfer?: ItemHandler<TransferBatch> | undefined;
  /** Chunks of this kind's large files (consumer `chunk`). */
  chunk?: ItemHandler<Chunk> | undefined;
  /**
   * The kind's own pull loops (restore: one consumer per job; HSM: the action partitions).
   * Resolves once the pull signal has aborted and they have stopped.
   */
  run?: (() => Promise<void>) | undefined;
  /** The job is being cancelled: stop its work in the kind's own loops (HSM actions). */
  cancel?: ((jobId: string) => void) | undefined;
}

/** One job kind on the worker: listed once in job-kinds.ts. */
export interface WorkerJobKind {
  readonly kind: JobKind;
  start(ctx: KindContext): KindHandlers;
}
