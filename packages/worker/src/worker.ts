import { setMaxListeners } from "node:events";
import type { BlobContainer } from "@hsmfleet/blob";
import { MemoryBudget, RequestConcurrency } from "@hsmfleet/blob/targets";
import type { RequestPacing } from "@hsmfleet/blob/targets";
import type { BlobServiceClient } from "@azure/storage-blob";
import {
  ChunkTracker,
  JobStore,
  ensureTopology,
  headerReader,
  jetstream,
  retryingPublishes,
  runWorkConsumer,
  withJetStreamRetry,
} from "@hsmfleet/bus";
import { handleExportChunk } from "./export-chunk.js";
import { handleImportChunk } from "./import-chunk.js";
import { ImportTarget } from "./import-target.js";
import { handleImportShard } from "./import-shard.js";
import { handleImportDownload } from "./import-download.js";
import { handleRestoreBatch } from "./restore-batch.js";
import { handleLustreRestore } from "./restore-lustre.js";
import { restoreVisitor } from "./restore-visitor.js";
import type {
  JetStreamClient,
  JsMsg,
  Redelivery,
  TopologyOptions,
  WorkConsumerOptions,
} from "@hsmfleet/bus";
import { DependencyError, displayPath, errorMessage } from "@hsmfleet/core";
import {
  JobKind,
  JobState,
  JOB_ID_PATTERN,
  encodeItemResult,
  newItemResult,
  subjects,
  TRANSFER_CONSUMER,
  CHUNK_CONSUMER,
  WALK_CONSUMER,
  WORK_STREAM,
  decodeChunk,
  decodeTransferBatch,
  decodeWalkShard,
  restoreConsumer,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { observeWorker, startWorkItem, traceLogFields } from "@hsmfleet/telemetry";
import { exportVisitor } from "./export-visitor.js";
import { HsmActionRunner } from "./hsm-action.js";
import { startHeartbeat } from "./heartbeat.js";
import { JobCache, isLive } from "./job-cache.js";
import { ItemProgressTracker } from "./item-progress.js";
import type { LiveItem } from "./item-progress.js";
import { JobLimiters } from "./job-limits.js";
import { LiveWorkers } from "./live-workers.js";
import { resolveWorkerOptions } from "./options.js";
import type { ResolvedWorkerOptions, WorkerOptions } from "./options.js";
import { scanVisitor } from "./scan-visitor.js";
import { handleTransferBatch } from "./transfer-batch.js";
import type { TransferContext } from "./transfer-batch.js";
import { handleVerifyBatch } from "./verify-batch.js";
import { verifyVisitor } from "./verify-visitor.js";
import { handleWalkShard, reportFailedItem } from "./walk-shard.js";
import { logHandedBack, logRedelivery } from "./work-item-log.js";
import type { WorkItemKind } from "./work-item-log.js";
import type { VisitorFactory, WalkContext } from "./walk-shard.js";

const VERSION = "0.1.0";

export interface WorkerStats {
  itemsInFlight: number;
  itemsDone: number;
  itemsFailed: number;
  entriesRead: number;
  bytesMoved: number;
  /** Entries tried again after a retryable failure (item level; request retries are in blobRetryStats). */
  entryRetries: number;
}

/** A job's share of its fleet-wide limits on this worker, and what it has spent (tests, logs). */
export interface WorkerJobLimits {
  liveWorkers: number;
  requestsPerSec: number;
  bytesPerSec: number;
  requestsTaken: number;
  bytesTaken: number;
}

interface ConsumerLimits {
  ackWaitMs: number;
  maxDeliver: number;
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
 */
export class Worker {
  readonly options: ResolvedWorkerOptions;
  readonly #js: JetStreamClient;
  readonly #jobs: JobCache;
  readonly #walk: ConsumerLimits;
  readonly #transfer: ConsumerLimits;
  readonly #chunk: ConsumerLimits;
  readonly #chunks: ChunkTracker;
  /** Stops pulling new items (shutdown step 1). */
  readonly #pullAbort = new AbortController();
  /** Aborts in-flight work (shutdown after the grace period). */
  readonly #abort = new AbortController();
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
  readonly #containers = new Map<string, BlobContainer>();
  /** Import targets by job id (each keeps a cache of verified directories). */
  readonly #targets = new Map<string, Promise<ImportTarget>>();
  readonly #jobStore: JobStore;
  /** Items in flight per job, reported to coordinators; stopped when their job is cancelled. */
  readonly #progress: ItemProgressTracker;
  #hsm: HsmActionRunner | undefined;
  #blobService: BlobServiceClient | undefined;
  #running: Promise<void> | undefined;

  private constructor(
    options: ResolvedWorkerOptions,
    store: JobStore,
    walk: ConsumerLimits,
    transfer: ConsumerLimits,
    chunk: ConsumerLimits,
    chunks: ChunkTracker,
  ) {
    this.options = options;
    // A stream electing a new leader (a node of a cluster died) is waited for, not a failed item.
    this.#js = retryingPublishes(jetstream(options.nc), {
      onRetry: (subject, attempt, err) => {
        if (attempt === 1)
          options.logger?.warn(
            { subject, err: errorMessage(err) },
            "JetStream did not take a publish; retrying",
          );
      },
    });
    this.#jobs = new JobCache(store);
    this.#progress = new ItemProgressTracker(
      options.nc,
      options.workerId,
      options.progressIntervalMs,
    );
    this.#jobStore = store;
    this.#walk = walk;
    this.#transfer = transfer;
    this.#chunk = chunk;
    this.#chunks = chunks;
    this.#budget = new MemoryBudget(options.memoryBudgetBytes);
    this.#requests = new RequestConcurrency({
      mode: options.requestConcurrency,
      max: options.maxRequestConcurrency,
      onChange: (limit, reason) =>
        options.logger?.debug({ requestConcurrency: limit, reason }, "request concurrency"),
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
    const limits = async (name: string): Promise<ConsumerLimits> => {
      const info = await withJetStreamRetry(`read the consumer ${name} on ${WORK_STREAM}`, () =>
        jsm.consumers.info(WORK_STREAM, name),
      );
      return {
        ackWaitMs: info.config.ack_wait ? info.config.ack_wait / 1_000_000 : topology.ackWaitMs,
        maxDeliver: info.config.max_deliver ?? topology.maxDeliver,
      };
    };
    return new Worker(
      resolved,
      new JobStore(jobs),
      await limits(WALK_CONSUMER),
      await limits(TRANSFER_CONSUMER),
      await limits(CHUNK_CONSUMER),
      new ChunkTracker(chunks),
    );
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
    const walkCtx: WalkContext = {
      js: this.#js,
      options,
      maxDeliver: this.#walk.maxDeliver,
      ackWaitMs: this.#walk.ackWaitMs,
      onEntries: (n) => {
        this.#stats.entriesRead += n;
      },
    };
    const transferCtx: TransferContext = {
      js: this.#js,
      options,
      budget: this.#budget,
      maxDeliver: this.#transfer.maxDeliver,
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
      maxDeliver: this.#chunk.maxDeliver,
    };
    // Items that go round again are logged at warn, by id, path (a chunk by its place) and reason.
    const logging = (kind: WorkItemKind, limits: ConsumerLimits) => ({
      onError: (err: unknown, msg: JsMsg | undefined) =>
        logHandedBack(options.logger, kind, err, msg, limits, this.#abort.signal.aborted),
      onRedelivery: (msg: JsMsg, redelivery: Redelivery) =>
        logRedelivery(options.logger, kind, msg, redelivery, limits),
      onLost: (why: string) => options.logger?.warn({ workerId: options.workerId }, why),
    });
    // A job being cancelled: its items here stop and report what they finished. The notice is
    // untrusted; the job record decides.
    const cancels = options.nc.subscribe(subjects.jobCancelAll, {
      callback: (err, m) => {
        if (err) return;
        const jobId = m.subject.slice(subjects.jobCancel("").length);
        if (!JOB_ID_PATTERN.test(jobId)) return;
        void this.#onCancelNotice(jobId).catch((e: unknown) =>
          options.logger?.warn({ jobId, err: errorMessage(e) }, "could not act on a cancel notice"),
        );
      },
    });
    this.#hsm = new HsmActionRunner({
      nc: options.nc,
      js: this.#js,
      workerId: options.workerId,
      job: (jobId) => this.#jobs.get(jobId),
      isLive,
      container: (job) => this.#container(job),
      budget: this.#budget,
      blockConcurrency: options.blockConcurrency,
      pullSignal: this.#pullAbort.signal,
      abortSignal: this.#abort.signal,
      lfsPath: options.lfsPath,
      onBytes: (n) => {
        this.#stats.bytesMoved += n;
      },
      onItems: (done, failed) => {
        this.#stats.itemsDone += done;
        this.#stats.itemsFailed += failed;
      },
      logger: options.logger,
    });
    try {
      await Promise.all([
        this.#runRestorePullers(transferCtx, logging("transfer", this.#transfer)),
        runWorkConsumer(options.nc, {
          stream: WORK_STREAM,
          consumer: WALK_CONSUMER,
          concurrency: options.concurrency,
          signal: this.#pullAbort.signal,
          handle: (msg) => this.#handleWalk(walkCtx, msg),
          ...logging("walk", this.#walk),
        }),
        runWorkConsumer(options.nc, {
          stream: WORK_STREAM,
          consumer: CHUNK_CONSUMER,
          concurrency: options.transferConcurrency,
          signal: this.#pullAbort.signal,
          handle: (msg) => this.#handleChunk(chunkCtx, msg),
          ...logging("chunk", this.#chunk),
        }),
        runWorkConsumer(options.nc, {
          stream: WORK_STREAM,
          consumer: TRANSFER_CONSUMER,
          concurrency: options.transferConcurrency,
          signal: this.#pullAbort.signal,
          handle: (msg) => this.#handleTransfer(transferCtx, msg),
          ...logging("transfer", this.#transfer),
        }),
        this.#hsm.run(),
      ]);
    } finally {
      cancels.unsubscribe();
      this.#progress.stop();
      heartbeat.stop();
      live.stop();
      this.#requests.stop();
      unobserve();
      options.logger?.info({ workerId: options.workerId, ...this.#stats }, "worker stopped");
    }
  }

  /**
   * Restore jobs have a consumer each (its max_ack_pending is the job's fleet-wide --max-inflight):
   * pull from it while the job runs. Jobs are found by watching the job records.
   */
  async #runRestorePullers(
    ctx: TransferContext,
    logging: Pick<WorkConsumerOptions, "onError" | "onRedelivery" | "onLost">,
  ): Promise<void> {
    const pullers = new Map<string, { abort: AbortController; done: Promise<void> }>();
    const consumerLimits = { ...this.#transfer };
    const start = (job: JobStatus) => {
      const jobId = job.spec.jobId;
      if (pullers.has(jobId) || this.#pullAbort.signal.aborted) return;
      const abort = new AbortController();
      const signal = AbortSignal.any([abort.signal, this.#pullAbort.signal]);
      const done = runWorkConsumer(this.options.nc, {
        stream: WORK_STREAM,
        consumer: restoreConsumer(jobId),
        concurrency: this.options.transferConcurrency,
        signal,
        handle: (msg) => this.#handleRestore(ctx, consumerLimits.maxDeliver, msg),
        ...logging,
      }).catch((err: unknown) => {
        // The consumer is made before the job record says "running"; a missing one means the job ended.
        this.options.logger?.debug({ jobId, err: errorMessage(err) }, "restore consumer gone");
      });
      pullers.set(jobId, { abort, done });
    };
    const stop = (jobId: string) => {
      const p = pullers.get(jobId);
      if (!p) return;
      p.abort.abort();
      pullers.delete(jobId);
    };
    const watcher = await this.#jobStore.watchAll((job) => {
      if (job.spec.kind !== JobKind.Restore) return;
      const jobId = job.spec.jobId;
      if (isLive(job)) start(job);
      else stop(jobId);
    }, logging.onLost);
    await new Promise<void>((resolve) => {
      if (this.#pullAbort.signal.aborted) resolve();
      else this.#pullAbort.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    watcher.stop();
    await Promise.allSettled([...pullers.values()].map((p) => p.done));
  }

  #handleRestore(ctx: TransferContext, maxDeliver: number, msg: JsMsg): Promise<void> {
    const batch = decodeTransferBatch(msg.data);
    const first = batch.entries[0]?.path ?? Buffer.alloc(0);
    return this.#run1(
      msg,
      maxDeliver,
      batch.jobId,
      { itemId: batch.batchId, kind: "transfer", path: first },
      (job, live) =>
        job.spec.backend === "lustre"
          ? handleLustreRestore(this.#itemCtx(ctx, live), msg, batch, job, this.#itemSignal(live))
          : handleRestoreBatch(
              this.#itemCtx(ctx, live),
              msg,
              batch,
              job,
              (name) => this.#containerNamed(name, job),
              this.#itemSignal(live),
            ),
    );
  }

  /** The job's container, through this worker's own credentials (the Azure SDK loads on first use). */
  #container(job: JobStatus): Promise<BlobContainer> {
    return this.#containerNamed(job.spec.container, job);
  }

  /**
   * A container client whose requests take this worker's request slots; a job with fleet-wide
   * limits gets a client of its own whose requests also pay the job's token buckets.
   */
  async #containerNamed(name: string, job: JobStatus): Promise<BlobContainer> {
    const limiter = this.#limiters.for(job.spec.jobId, job.spec.limits);
    const key = limiter === undefined ? name : `${name}\n${job.spec.jobId}`;
    let container = this.#containers.get(key);
    if (!container) {
      const { BlobContainer, createBlobServiceClient, DEFAULT_MAX_SOCKETS } =
        await import("@hsmfleet/blob");
      if (!this.options.storage) {
        throw new DependencyError(
          `worker ${this.options.workerId} has no storage credentials for container ${name} (start it with --storage, AZURE_STORAGE_CONNECTION_STRING, or a managed identity account URL)`,
        );
      }
      const clientOptions = (pacing: RequestPacing) => ({
        localAddress: this.options.bindAddress,
        maxRetries: this.options.requestRetries,
        retryDelayMs: this.options.requestRetryDelayMs,
        maxSockets: Math.max(DEFAULT_MAX_SOCKETS, this.#requests.max),
        pacing,
      });
      const service =
        limiter === undefined
          ? (this.#blobService ??= createBlobServiceClient(
              this.options.storage,
              clientOptions({ slots: this.#requests.slots }),
            ))
          : createBlobServiceClient(
              this.options.storage,
              clientOptions({ slots: this.#requests.slots, limits: limiter.buckets }),
            );
      container = new BlobContainer(service.getContainerClient(name));
      // Clients of finished limited jobs go (the oldest first).
      if (this.#containers.size >= 64)
        this.#containers.delete(this.#containers.keys().next().value!);
      this.#containers.set(key, container);
    }
    return container;
  }

  /** The import target of a job (opened once per job). */
  #importTarget(job: JobStatus): Promise<ImportTarget> {
    const id = job.spec.jobId;
    let target = this.#targets.get(id);
    if (!target) {
      target = ImportTarget.open({
        root: job.spec.root.toString(),
        mode: job.spec.import.mode,
        conflict: job.spec.import.conflict,
        archiveId: job.spec.import.archiveId,
        backend: job.spec.backend,
        hsmXattr: job.spec.hsmXattr || "trusted.hsm",
        lfsPath: this.options.lfsPath,
        container: job.spec.container,
      });
      target.catch(() => this.#targets.delete(id));
      if (this.#targets.size > 64) this.#targets.delete(this.#targets.keys().next().value!);
      this.#targets.set(id, target);
    }
    return target;
  }

  /** A transfer context whose bytes and counters are also those of one item in flight. */
  #itemCtx(ctx: TransferContext, live: LiveItem): TransferContext {
    return {
      ...ctx,
      onBytes: (n) => {
        live.bytes += n;
        ctx.onBytes(n);
      },
      track: (counters) => {
        live.counters = counters;
      },
    };
  }

  /** Aborted when the worker stops or the item's job is cancelled. */
  #itemSignal(live: LiveItem): AbortSignal {
    return AbortSignal.any([this.#abort.signal, live.signal]);
  }

  /** A cancel notice: stops the job's items here if its record says it is being cancelled. */
  async #onCancelNotice(jobId: string): Promise<void> {
    this.#jobs.forget(jobId);
    const job = await this.#jobStore.get(jobId);
    if (job?.state !== JobState.Cancelling && job?.state !== JobState.Cancelled) return;
    this.options.logger?.info({ jobId }, "job cancelled: stopping its items here");
    this.#progress.cancel(jobId);
    this.#hsm?.cancelJob(jobId);
  }

  /**
   * An item stopped because its job was cancelled: not a failure. Its result counts what it
   * finished (under the id its full result would have, so only one of them is ever counted) and
   * the item is not handed back.
   */
  async #reportCancelled(
    msg: JsMsg,
    jobId: string,
    item: { itemId: string; kind: "walk" | "transfer" | "chunk" },
    live: LiveItem,
  ): Promise<void> {
    this.options.logger?.info(
      { jobId, item: item.itemId, kind: item.kind },
      `${item.kind} item cancelled with its job`,
    );
    await this.#js.publish(
      subjects.itemResult(jobId),
      encodeItemResult(
        newItemResult({
          jobId,
          itemId: item.itemId,
          kind: item.kind,
          workerId: this.options.workerId,
          attempt: msg.info.deliveryCount,
          ...live.counters,
        }),
      ),
      { msgID: `${item.itemId}.r` },
    );
    msg.term();
  }

  /** Runs one item with the bookkeeping every kind shares: job check, stats, last-attempt reporting. */
  async #run1(
    msg: JsMsg,
    maxDeliver: number,
    jobId: string,
    item: { itemId: string; kind: "walk" | "transfer" | "chunk"; path: Buffer },
    work: (job: JobStatus, live: LiveItem) => Promise<void>,
  ): Promise<void> {
    const traced = startWorkItem(headerReader(msg), {
      ...item,
      jobId,
      workerId: this.options.workerId,
      attempt: msg.info.deliveryCount,
      key: msg,
    });
    const job = await this.#jobs.get(jobId);
    if (!isLive(job)) {
      // Cancelled, finished or unknown job: nothing to do, and nobody to redeliver to.
      msg.term();
      traced.end("skipped");
      return;
    }
    this.#stats.itemsInFlight++;
    const live = this.#progress.start(jobId, item.itemId, msg.info.deliveryCount, job.spec.kind);
    try {
      await traced.run(() => work(job, live));
      this.#stats.itemsDone++;
      traced.end("ok");
    } catch (err) {
      if (live.signal.aborted && !this.#abort.signal.aborted) {
        traced.end("skipped");
        await this.#reportCancelled(msg, jobId, item, live);
        return;
      }
      traced.end(msg.info.deliveryCount >= maxDeliver ? "failed" : "retry", err);
      if (msg.info.deliveryCount >= maxDeliver) {
        this.#stats.itemsFailed++;
        this.options.logger?.error(
          {
            jobId,
            item: item.itemId,
            path: displayPath(item.path),
            err: errorMessage(err),
            ...traceLogFields(msg),
          },
          `${item.kind} item failed on its last attempt`,
        );
        await reportFailedItem(
          { js: this.#js, options: this.options },
          msg,
          { jobId, ...item },
          err,
        );
        return;
      }
      throw err;
    } finally {
      this.#progress.end(live);
      this.#stats.itemsInFlight--;
    }
  }

  #handleWalk(ctx: WalkContext, msg: JsMsg): Promise<void> {
    const shard = decodeWalkShard(msg.data);
    return this.#run1(
      msg,
      this.#walk.maxDeliver,
      shard.jobId,
      { itemId: shard.shardId, kind: "walk", path: shard.paths[0] ?? Buffer.alloc(0) },
      async (job) => {
        if (job.spec.kind === JobKind.Import) {
          const [container, target] = await Promise.all([
            this.#container(job),
            this.#importTarget(job),
          ]);
          await handleImportShard(ctx, msg, shard, job, container, target);
          return;
        }
        const visitor: VisitorFactory =
          job.spec.kind === JobKind.Export
            ? exportVisitor(await this.#container(job))
            : job.spec.kind === JobKind.Restore
              ? restoreVisitor
              : job.spec.kind === JobKind.Verify
                ? verifyVisitor(await this.#container(job))
                : scanVisitor;
        await handleWalkShard(ctx, msg, shard, job, visitor);
      },
    );
  }

  #handleTransfer(ctx: TransferContext, msg: JsMsg): Promise<void> {
    const batch = decodeTransferBatch(msg.data);
    const first = batch.entries[0]?.path ?? Buffer.alloc(0);
    return this.#run1(
      msg,
      this.#transfer.maxDeliver,
      batch.jobId,
      { itemId: batch.batchId, kind: "transfer", path: first },
      async (job, live) => {
        const container = await this.#container(job);
        const itemCtx = this.#itemCtx(ctx, live);
        const signal = this.#itemSignal(live);
        if (job.spec.kind === JobKind.Import) {
          const target = await this.#importTarget(job);
          await handleImportDownload(itemCtx, msg, batch, job, container, target, signal);
        } else if (job.spec.kind === JobKind.Verify) {
          await handleVerifyBatch(itemCtx, msg, batch, job, container, signal);
        } else {
          await handleTransferBatch(itemCtx, msg, batch, job, container, signal);
        }
      },
    );
  }

  #handleChunk(ctx: TransferContext, msg: JsMsg): Promise<void> {
    const chunk = decodeChunk(msg.data);
    return this.#run1(
      msg,
      this.#chunk.maxDeliver,
      chunk.jobId,
      { itemId: chunk.chunkId, kind: "chunk", path: chunk.path },
      async (job, live) => {
        if (job.spec.kind === JobKind.Export) {
          const container = await this.#container(job);
          await handleExportChunk(
            this.#itemCtx(ctx, live),
            msg,
            chunk,
            job,
            container,
            this.#chunks,
            this.#itemSignal(live),
          );
          return;
        }
        if (job.spec.kind !== JobKind.Import) {
          throw new DependencyError(
            `job ${job.spec.jobId}: chunk items of this job kind are not handled by this worker version`,
          );
        }
        const [container, target] = await Promise.all([
          this.#container(job),
          this.#importTarget(job),
        ]);
        await handleImportChunk(
          this.#itemCtx(ctx, live),
          msg,
          chunk,
          job,
          container,
          target,
          this.#chunks,
          this.#itemSignal(live),
        );
      },
    );
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
