import { setMaxListeners } from "node:events";
import { MemoryBudget, RequestConcurrency } from "@hsmfleet/blob/targets";
import {
  ChunkTracker,
  JobStore,
  ensureTopology,
  jetstream,
  retryingPublishes,
  sealingPublishes,
  runWorkConsumer,
  withJetStreamRetry,
} from "@hsmfleet/bus";
import type { JetStreamClient, JsMsg, Redelivery, TopologyOptions } from "@hsmfleet/bus";
import { displayPath, errorMessage } from "@hsmfleet/core";
import { TRANSFER_CONSUMER, WALK_CONSUMER, CHUNK_CONSUMER, WORK_STREAM } from "@hsmfleet/protocol";
import type { JobKind } from "@hsmfleet/protocol";
import { observeWorker } from "@hsmfleet/telemetry";
import { WORKER_JOB_KINDS } from "./job-kinds.js";
import { resolveWorkerOptions } from "./options.js";
import type { ResolvedWorkerOptions, WorkerOptions } from "./options.js";
import { BlobContainers } from "./runtime/containers.js";
import { startHeartbeat } from "./runtime/heartbeat.js";
import { JobCache } from "./runtime/job-cache.js";
import type { ConsumerLimits, KindContext, KindHandlers } from "./runtime/job-kind.js";
import { JobLimiters } from "./runtime/job-limits.js";
import { LiveWorkers } from "./runtime/live-workers.js";
import { admitItem } from "./runtime/admit-item.js";
import { listenForCancels } from "./runtime/cancel-notices.js";
import { ItemProgressTracker } from "./runtime/item-progress.js";
import { runWorkItem } from "./runtime/run-item.js";
import type { TransferContext } from "./runtime/transfer-batch.js";
import { logHandedBack, logRedelivery } from "./runtime/work-item-log.js";
import type { WorkItemKind } from "./runtime/work-item-log.js";
import type { WorkerStats } from "./runtime/worker-stats.js";
import type { WalkContext } from "./walk/walk-shard.js";
import { WorkBacklog } from "./walk/work-backlog.js";
import { WORK_CONSUMERS } from "./work-consumers.js";

export type { WorkerStats } from "./runtime/worker-stats.js";

const VERSION = "0.1.0";

/** A job's share of its fleet-wide limits on this worker, and what it has spent (tests, logs). */
export interface WorkerJobLimits {
  liveWorkers: number;
  requestsPerSec: number;
  bytesPerSec: number;
  requestsTaken: number;
  bytesTaken: number;
}

/**
 * A stateless worker: pulls work items from the shared durable consumers (directory walks and
 * transfer batches), carries them out and reports results. Any number may run on any number of
 * VMs; one that dies leaves its items unacknowledged and JetStream hands them to another.
 *
 *   const worker = await Worker.create({ nc, storage });
 *   const done = worker.run();
 *   ...
 *   await worker.shutdown();
 *
 * What each job kind does lives in its folder (walk/, export/, import/, restore/, verify/, hsm/)
 * and is listed in job-kinds.ts; the consumers every kind shares are in work-consumers.ts.
 */
export class Worker {
  readonly options: ResolvedWorkerOptions;
  readonly #js: JetStreamClient;
  readonly #jobs: JobCache;
  /** Settings of the shared consumers, by consumer name. */
  readonly #limits: ReadonlyMap<string, ConsumerLimits>;
  readonly #chunks: ChunkTracker;
  /** Stops pulling new items (shutdown step 1). */
  readonly #pullAbort = new AbortController();
  /** Aborts in-flight work (shutdown after the grace period). */
  readonly #abort = new AbortController();
  /** The walks' backpressure (options.maxQueuedBatches); its stats show the waits. */
  readonly backlog: WorkBacklog;
  readonly #stats: WorkerStats = {
    itemsInFlight: 0,
    itemsDone: 0,
    itemsFailed: 0,
    entriesRead: 0,
    bytesMoved: 0,
    entryRetries: 0,
  };
  readonly #startedAtMs = Date.now();
  readonly #budget: MemoryBudget;
  /** Request slots shared by all transfers of this worker, and their controller. */
  readonly #requests: RequestConcurrency;
  readonly #limiters = new JobLimiters(1);
  readonly #containers: BlobContainers;
  readonly #jobStore: JobStore;
  /** Items in flight per job, reported to coordinators; stopped when their job is cancelled. */
  readonly #progress: ItemProgressTracker;
  #running: Promise<void> | undefined;

  private constructor(
    options: ResolvedWorkerOptions,
    store: JobStore,
    limits: ReadonlyMap<string, ConsumerLimits>,
    chunks: ChunkTracker,
  ) {
    this.options = options;
    this.#jobs = new JobCache(store);
    // A stream electing a new leader (a node of a cluster died) is waited for, not a failed item.
    // Every work item and result of a job is sealed with the job's key (see item-checks.ts).
    this.#js = sealingPublishes(
      retryingPublishes(jetstream(options.nc), {
        onRetry: (subject, attempt, err) => {
          if (attempt === 1)
            options.logger?.warn(
              { subject, err: errorMessage(err) },
              "JetStream did not take a publish; retrying",
            );
        },
      }),
      async (jobId) => (await this.#jobs.get(jobId))?.spec.itemKey,
    );
    this.#jobStore = store;
    this.#progress = new ItemProgressTracker(
      options.nc,
      options.workerId,
      options.progressIntervalMs,
    );
    this.#limits = limits;
    this.#chunks = chunks;
    this.#budget = new MemoryBudget(options.memoryBudgetBytes);
    this.#requests = new RequestConcurrency({
      mode: options.requestConcurrency,
      max: options.maxRequestConcurrency,
      onChange: (limit, reason) =>
        options.logger?.debug({ requestConcurrency: limit, reason }, "request concurrency"),
    });
    this.#containers = new BlobContainers(options, this.#requests, this.#limiters);
    // A stopping worker does not wait for the backlog: it publishes what its walks hold.
    this.backlog = new WorkBacklog({
      nc: options.nc,
      maxQueuedBatches: options.maxQueuedBatches,
      signal: this.#pullAbort.signal,
      onReadFailed: (err) =>
        options.logger?.warn(
          { err: errorMessage(err) },
          "could not read the WORK stream's backlog: walks publish unchecked for 10 s",
        ),
    });
    // Every request in flight listens on this signal; hundreds at once are expected.
    setMaxListeners(0, this.#abort.signal);
  }

  static async create(
    options: WorkerOptions & { topology?: TopologyOptions | undefined },
  ): Promise<Worker> {
    const resolved = resolveWorkerOptions(options);
    const { jsm, jobs, chunks, topology } = await ensureTopology(resolved.nc, options.topology);
    // The consumers' settings are the truth (another process may have created them with other values).
    // Read together: round trips before the worker pulls anything (issue 17's fixed cost).
    const infos = await Promise.all(
      WORK_CONSUMERS.map(({ consumer: name }) =>
        withJetStreamRetry(`read the consumer ${name} on ${WORK_STREAM}`, () =>
          jsm.consumers.info(WORK_STREAM, name),
        ),
      ),
    );
    const limits = new Map<string, ConsumerLimits>();
    WORK_CONSUMERS.forEach(({ consumer: name }, i) => {
      const info = infos[i]!;
      limits.set(name, {
        ackWaitMs: info.config.ack_wait ? info.config.ack_wait / 1_000_000 : topology.ackWaitMs,
        maxDeliver: info.config.max_deliver ?? topology.maxDeliver,
      });
    });
    return new Worker(resolved, new JobStore(jobs), limits, new ChunkTracker(chunks));
  }

  get stats(): Readonly<WorkerStats> {
    return this.#stats;
  }

  /** Storage requests allowed in flight now, the cap, and why (auto mode) — or "fixed". */
  get requestConcurrency(): { current: number; max: number; reason: string } {
    return {
      current: this.#requests.current,
      max: this.#requests.max,
      reason: this.#requests.reason,
    };
  }

  /** Workers alive as this one sees the heartbeats (job-wide limits are split by this count). */
  get liveWorkers(): number {
    return this.#limiters.workers;
  }

  /** The job's share of its fleet-wide limits on this worker; undefined if it has none (yet). */
  jobLimits(jobId: string): WorkerJobLimits | undefined {
    const limiter = this.#limiters.get(jobId);
    if (limiter === undefined) return undefined;
    const { requests, bytes } = limiter.buckets;
    return {
      liveWorkers: this.#limiters.workers,
      requestsPerSec: requests?.ratePerSec ?? 0,
      bytesPerSec: bytes?.ratePerSec ?? 0,
      requestsTaken: requests?.spent ?? 0,
      bytesTaken: bytes?.spent ?? 0,
    };
  }

  /** Pulls and handles items until shutdown() or the connection closes. */
  run(): Promise<void> {
    this.#running ??= this.#run();
    return this.#running;
  }

  /** A shared consumer's settings (read from the server in create()). */
  #limitsOf(consumer: string): ConsumerLimits {
    return this.#limits.get(consumer)!;
  }

  async #run(): Promise<void> {
    const { options } = this;
    const heartbeat = startHeartbeat(
      options.nc,
      options.workerId,
      options.heartbeatIntervalMs,
      () => ({
        workerId: options.workerId,
        vmName: options.vmName,
        pid: process.pid,
        version: VERSION,
        startedAtMs: this.#startedAtMs,
        sentAtMs: Date.now(),
        itemsInFlight: this.#stats.itemsInFlight,
        itemsDone: this.#stats.itemsDone,
        entriesRead: this.#stats.entriesRead,
        bytesMoved: this.#stats.bytesMoved,
        concurrency: options.concurrency,
        rssBytes: process.memoryUsage.rss(),
        requestConcurrency: this.#requests.current,
        maxRequestConcurrency: this.#requests.max,
      }),
    );
    const live = new LiveWorkers(
      options.nc,
      options.workerId,
      3 * options.heartbeatIntervalMs,
      (n) => this.#limiters.setWorkers(n),
    );
    options.logger?.info(
      {
        workerId: options.workerId,
        vm: options.vmName,
        concurrency: options.concurrency,
        requestConcurrency: options.requestConcurrency,
        maxRequestConcurrency: options.maxRequestConcurrency,
        storage: options.storage !== undefined,
      },
      "worker started",
    );
    const walkLimits = this.#limitsOf(WALK_CONSUMER);
    const transferLimits = this.#limitsOf(TRANSFER_CONSUMER);
    const walkCtx: WalkContext = {
      js: this.#js,
      options,
      maxDeliver: walkLimits.maxDeliver,
      ackWaitMs: walkLimits.ackWaitMs,
      onEntries: (n) => {
        this.#stats.entriesRead += n;
      },
      backlog: this.backlog,
    };
    const transferCtx: TransferContext = {
      js: this.#js,
      options,
      budget: this.#budget,
      maxDeliver: transferLimits.maxDeliver,
      onBytes: (n) => {
        this.#stats.bytesMoved += n;
      },
      onRetry: (attempt, error) => {
        this.#stats.entryRetries++;
        options.logger?.info(
          { path: displayPath(error.path), attempt, err: error.message },
          "entry failed; trying again",
        );
      },
    };
    const unobserve = observeWorker({
      ...options,
      concurrency: () => options.concurrency,
      requestConcurrency: () => this.#requests.current,
    });
    const chunkCtx: TransferContext = {
      ...transferCtx,
      maxDeliver: this.#limitsOf(CHUNK_CONSUMER).maxDeliver,
    };
    // Items that go round again are logged at warn, by id, path (a chunk by its place) and reason.
    const logging = (kind: WorkItemKind, limits: ConsumerLimits) => ({
      onError: (err: unknown, msg: JsMsg | undefined) =>
        logHandedBack(options.logger, kind, err, msg, limits, this.#abort.signal.aborted),
      onRedelivery: (msg: JsMsg, redelivery: Redelivery) =>
        logRedelivery(options.logger, kind, msg, redelivery, limits),
      onLost: (why: string) => options.logger?.warn({ workerId: options.workerId }, why),
    });
    const ctx: KindContext = {
      options,
      js: this.#js,
      walk: walkCtx,
      transfer: transferCtx,
      chunk: chunkCtx,
      transferLimits,
      chunks: this.#chunks,
      budget: this.#budget,
      jobs: this.#jobs,
      jobStore: this.#jobStore,
      stats: this.#stats,
      pullSignal: this.#pullAbort.signal,
      abortSignal: this.#abort.signal,
      container: (job) => this.#containers.container(job),
      containerNamed: (name, job) => this.#containers.containerNamed(name, job),
      runItem: (msg, maxDeliver, jobId, item, work) =>
        runWorkItem(
          {
            js: this.#js,
            options,
            jobs: this.#jobs,
            stats: this.#stats,
            progress: this.#progress,
            abortSignal: this.#abort.signal,
          },
          msg,
          maxDeliver,
          jobId,
          item,
          work,
        ),
      admit: (msg, rules) => admitItem({ js: this.#js, options, jobs: this.#jobs }, msg, rules),
      logging,
    };
    const kinds = new Map<JobKind, KindHandlers>(
      WORKER_JOB_KINDS.map((k) => [k.kind, k.start(ctx)]),
    );
    // A job being cancelled: its items here stop and report what they finished (and its HSM
    // actions stop). The notice is untrusted; the job record decides.
    const stopListening = listenForCancels(
      options.nc,
      this.#jobs,
      this.#jobStore,
      (jobId) => {
        this.#progress.cancel(jobId);
        for (const k of kinds.values()) k.cancel?.(jobId);
      },
      options.logger,
    );
    try {
      await Promise.all([
        ...WORK_CONSUMERS.map((c) => {
          const limits = this.#limitsOf(c.consumer);
          return runWorkConsumer(options.nc, {
            stream: WORK_STREAM,
            consumer: c.consumer,
            concurrency: c.concurrency(options),
            signal: this.#pullAbort.signal,
            handle: (msg) => c.handle(msg, ctx, limits.maxDeliver, kinds),
            ...logging(c.itemKind, limits),
          });
        }),
        ...[...kinds.values()].map((k) => k.run?.()),
      ]);
    } finally {
      stopListening();
      this.#progress.stop();
      heartbeat.stop();
      live.stop();
      this.#requests.stop();
      unobserve();
      options.logger?.info({ workerId: options.workerId, ...this.#stats }, "worker stopped");
    }
  }

  /**
   * Stops pulling and aborts in-flight transfers at once (a second SIGTERM): they fail, are nak'ed
   * and so handed back to the fleet without waiting for the ack wait; nothing half-done is
   * committed. Resolves when run() has returned.
   */
  async abort(): Promise<void> {
    this.#pullAbort.abort();
    this.#abort.abort(new Error("worker aborted"));
    await this.#running?.catch(() => undefined);
  }

  /**
   * Stops pulling; waits up to shutdownGraceMs for in-flight items, then aborts what is left (it
   * is redelivered to another worker; nothing half-done is committed).
   */
  async shutdown(): Promise<void> {
    if (!this.#running) {
      this.#pullAbort.abort();
      this.#abort.abort();
      return;
    }
    // Stop pulling first, let in-flight work finish within the grace period.
    this.#pullAbort.abort();
    const grace = new Promise<"timeout">((resolve) =>
      setTimeout(() => resolve("timeout"), this.options.shutdownGraceMs).unref(),
    );
    const outcome = await Promise.race([this.#running.then(() => "done" as const), grace]);
    if (outcome === "timeout") this.#abort.abort(new Error("worker shutdown: grace period over"));
  }
}
