import { JobStore, ensureTopology, jetstream, runWorkConsumer } from "@hsmfleet/bus";
import type { JetStreamClient, JsMsg, TopologyOptions } from "@hsmfleet/bus";
import { displayPath, errorMessage } from "@hsmfleet/core";
import { decodeWalkShard, WALK_CONSUMER, WORK_STREAM } from "@hsmfleet/protocol";
import { startHeartbeat } from "./heartbeat.js";
import { JobCache, isLive } from "./job-cache.js";
import { resolveWorkerOptions } from "./options.js";
import type { ResolvedWorkerOptions, WorkerOptions } from "./options.js";
import { handleWalkShard, reportFailedShard } from "./walk-shard.js";
import type { WalkContext } from "./walk-shard.js";

const VERSION = "0.1.0";

export interface WorkerStats {
  itemsInFlight: number;
  itemsDone: number;
  itemsFailed: number;
  entriesRead: number;
}

/**
 * A stateless worker: pulls work items from the shared durable consumers, carries them out and
 * reports results. Any number may run on any number of VMs; one that dies leaves its items
 * unacknowledged and JetStream hands them to another.
 *
 *   const worker = await Worker.create({ nc });
 *   const done = worker.run();
 *   ...
 *   await worker.shutdown();
 */
export class Worker {
  readonly options: ResolvedWorkerOptions;
  readonly #js: JetStreamClient;
  readonly #jobs: JobCache;
  readonly #ackWaitMs: number;
  readonly #maxDeliver: number;
  readonly #abort = new AbortController();
  readonly #stats: WorkerStats = { itemsInFlight: 0, itemsDone: 0, itemsFailed: 0, entriesRead: 0 };
  readonly #startedAtMs = Date.now();
  #running: Promise<void> | undefined;

  private constructor(
    options: ResolvedWorkerOptions,
    store: JobStore,
    ackWaitMs: number,
    maxDeliver: number,
  ) {
    this.options = options;
    this.#js = jetstream(options.nc);
    this.#jobs = new JobCache(store);
    this.#ackWaitMs = ackWaitMs;
    this.#maxDeliver = maxDeliver;
  }

  static async create(
    options: WorkerOptions & { topology?: TopologyOptions | undefined },
  ): Promise<Worker> {
    const resolved = resolveWorkerOptions(options);
    const { jsm, jobs, topology } = await ensureTopology(resolved.nc, options.topology);
    // The consumer's settings are the truth (another process may have created it with other values).
    const info = await jsm.consumers.info(WORK_STREAM, WALK_CONSUMER);
    const ackWaitMs = info.config.ack_wait ? info.config.ack_wait / 1_000_000 : topology.ackWaitMs;
    return new Worker(
      resolved,
      new JobStore(jobs),
      ackWaitMs,
      info.config.max_deliver ?? topology.maxDeliver,
    );
  }

  get stats(): Readonly<WorkerStats> {
    return this.#stats;
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
        bytesMoved: 0,
        concurrency: options.concurrency,
        rssBytes: process.memoryUsage.rss(),
      }),
    );
    options.logger?.info(
      { workerId: options.workerId, vm: options.vmName, concurrency: options.concurrency },
      "worker started",
    );
    const ctx: WalkContext = {
      js: this.#js,
      options,
      maxDeliver: this.#maxDeliver,
      ackWaitMs: this.#ackWaitMs,
      onEntries: (n) => {
        this.#stats.entriesRead += n;
      },
    };
    try {
      await runWorkConsumer(options.nc, {
        stream: WORK_STREAM,
        consumer: WALK_CONSUMER,
        concurrency: options.concurrency,
        signal: this.#abort.signal,
        handle: (msg) => this.#handleWalk(ctx, msg),
        onError: (err) =>
          options.logger?.warn({ err: errorMessage(err) }, "work item failed; it will be retried"),
      });
    } finally {
      heartbeat.stop();
      options.logger?.info({ workerId: options.workerId, ...this.#stats }, "worker stopped");
    }
  }

  async #handleWalk(ctx: WalkContext, msg: JsMsg): Promise<void> {
    const shard = decodeWalkShard(msg.data);
    const job = await this.#jobs.get(shard.jobId);
    if (!isLive(job)) {
      // Cancelled, finished or unknown job: nothing to do, and nobody to redeliver to.
      msg.term();
      return;
    }
    this.#stats.itemsInFlight++;
    try {
      await handleWalkShard(ctx, msg, shard, job);
      this.#stats.itemsDone++;
    } catch (err) {
      if (msg.info.deliveryCount >= this.#maxDeliver) {
        this.#stats.itemsFailed++;
        this.options.logger?.error(
          { jobId: shard.jobId, path: displayPath(shard.path), err: errorMessage(err) },
          "walk shard failed on its last attempt",
        );
        await reportFailedShard(ctx, msg, shard, err);
        return;
      }
      throw err;
    } finally {
      this.#stats.itemsInFlight--;
    }
  }

  /**
   * Stops pulling; waits up to shutdownGraceMs for in-flight items, then returns (items still
   * running are abandoned and will be redelivered to another worker).
   */
  async shutdown(): Promise<void> {
    this.#abort.abort();
    if (!this.#running) return;
    const grace = new Promise<void>((resolve) =>
      setTimeout(resolve, this.options.shutdownGraceMs).unref(),
    );
    await Promise.race([this.#running, grace]);
  }
}
