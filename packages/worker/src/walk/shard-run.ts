import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import {
  decodeChunk,
  decodeTransferBatch,
  decodeWalkShard,
  encodeErrorBatch,
  newItemResult,
  subjects,
  attemptScope,
  walkResultId,
} from "@hsmfleet/protocol";
import type { ItemError, ItemResult, JobStatus, WalkShard } from "@hsmfleet/protocol";
import type { ResolvedWorkerOptions } from "../options.js";
import { ERRORS_PER_MESSAGE, Publisher } from "../runtime/publisher.js";
import { ChildWindow } from "./child-window.js";
import { claimAttempt } from "./claim-attempt.js";
import { Declarations } from "./declarations.js";
import type { HeldChild } from "./declarations.js";
import type { WorkBacklog } from "./work-backlog.js";

export interface WalkContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  /** Consumer's max_deliver, to know the last attempt. */
  maxDeliver: number;
  ackWaitMs: number;
  /** Counts for heartbeats. */
  onEntries(n: number): void;
  /** Bounds the job's queued transfer batches (work-backlog.ts); absent: no bound. */
  backlog?: WorkBacklog | undefined;
}

/**
 * The bookkeeping every shard-like item shares: errors batched onto the results stream, children
 * held in a ChildWindow until announced, ack-wait extension, and the final result that is the last
 * word on the item (deterministic message ids throughout, so a redelivery adds nothing).
 */
export class ShardRun {
  readonly publisher: Publisher;
  readonly errors: ItemError[] = [];
  /**
   * Root-relative paths (latin1) that children an earlier attempt declared already cover, found
   * by resume(): directories walked by its sub-shards, entries in its batches. This attempt's
   * walk leaves them out (no second upload or download of a file in flight).
   */
  readonly covered = { directories: new Set<string>(), entries: new Set<string>() };
  readonly #ctx: WalkContext;
  readonly #msg: JsMsg;
  readonly #shard: WalkShard;
  #window: ChildWindow | undefined;
  /** This run's attempt: the delivery count until resume() claims it (claim-attempt.ts). */
  #attempt: number;
  readonly #job: JobStatus;
  #errorSeq = 0;
  #lastWorking = Date.now();
  /** Keeps the item alive however long one step takes (a slow disk, a loaded machine). */
  readonly #timer: NodeJS.Timeout;

  constructor(ctx: WalkContext, msg: JsMsg, shard: WalkShard, job: JobStatus) {
    this.#ctx = ctx;
    this.#msg = msg;
    this.#shard = shard;
    this.publisher = new Publisher(ctx.js);
    this.#job = job;
    this.#attempt = msg.info.deliveryCount;
    this.#timer = setInterval(() => this.keepAlive(), Math.max(250, ctx.ackWaitMs / 4));
    this.#timer.unref();
  }

  /** Stops the keep-alive timer (finish() does it too); call when the item ends any other way. */
  stop(): void {
    clearInterval(this.#timer);
  }

  /** The received message: the key its trace context is bound to (annotateSpan, traceHeaders). */
  get message(): JsMsg {
    return this.#msg;
  }

  /** Delivery attempt of this item (1 = first). */
  get attempt(): number {
    return this.#attempt;
  }

  get #win(): ChildWindow {
    if (this.#window === undefined) throw new Error("ShardRun: resume() must run before the walk");
    return this.#window;
  }

  /** See ShardScope.childPrefix. */
  get childPrefix(): string {
    const scope = attemptScope(this.attempt);
    return scope === "" ? this.#shard.shardId : `${this.#shard.shardId}.${scope.slice(0, -1)}`;
  }

  /**
   * Call before the walk. A redelivered shard first re-publishes the children its earlier
   * attempts declared (declarations.ts) and declares none of them again. True when an earlier
   * attempt's final result stands: that walk declared every entry it found, so the shard is
   * done (acknowledged here) and is not walked again.
   */
  async resume(): Promise<boolean> {
    const { options } = this.#ctx;
    const shard = this.#shard;
    const deliveryCount = this.#msg.info.deliveryCount;
    this.#attempt = await claimAttempt(
      this.#ctx.js,
      options.nc,
      shard.jobId,
      shard.shardId,
      deliveryCount,
    );
    const attempt = this.#attempt;
    options.logger?.debug(
      {
        jobId: shard.jobId,
        shardId: shard.shardId,
        seq: this.#msg.info.streamSequence,
        deliveryCount,
        attempt,
      },
      "walk shard received",
    );
    const declarations = new Declarations(
      this.#ctx.js,
      options.nc,
      shard,
      this.#job.spec.itemKey,
      options.workerId,
      attempt,
    );
    const window = new ChildWindow(this.#ctx.js, shard, this.#msg, {
      workerId: options.workerId,
      attempt,
      declarations,
      backlog: this.#ctx.backlog,
      beforeHeldChild: options.hooks.beforeHeldChild,
    });
    this.#window = window;
    if (attempt <= 1) return false;
    const earlier = await declarations.replayEarlier((c) => {
      this.#cover(c);
      return window.publishNow(c);
    });
    await window.flush();
    window.skip(earlier.declared);
    if (earlier.declarations > 0)
      this.#ctx.options.logger?.info(
        {
          jobId: this.#shard.jobId,
          shardId: this.#shard.shardId,
          attempt: this.attempt,
          declarations: earlier.declarations,
          republished: earlier.republished,
          walkedAgain: !earlier.done,
        },
        "walk shard redelivered: re-published the children an earlier attempt declared",
      );
    if (!earlier.done) return false;
    await this.#ctx.options.hooks.afterWalkShard?.(this.#shard);
    this.stop();
    this.#msg.ack();
    return true;
  }

  #cover(c: HeldChild): void {
    const jobId = this.#shard.jobId;
    try {
      if (c.subject === subjects.walk(jobId))
        for (const p of decodeWalkShard(c.data).paths)
          this.covered.directories.add(p.toString("latin1"));
      else if (c.subject === subjects.chunk(jobId))
        this.covered.entries.add(decodeChunk(c.data).path.toString("latin1"));
      else
        for (const e of decodeTransferBatch(c.data).entries)
          this.covered.entries.add(e.path.toString("latin1"));
    } catch {
      // Not decodable here: its entries are walked again (and the child's worker refuses it).
    }
  }

  readonly spawn = (subject: string, data: Uint8Array, msgID: string): Promise<void> =>
    this.#win.add(subject, data, msgID);

  readonly recordError = async (err: ItemError): Promise<void> => {
    this.errors.push(err);
    if (this.errors.length >= ERRORS_PER_MESSAGE * 2) await this.#flushErrors(ERRORS_PER_MESSAGE);
  };

  /** Tells JetStream the item is still being worked on (at most every third of the ack wait). */
  keepAlive(): void {
    const now = Date.now();
    if (now - this.#lastWorking > this.#ctx.ackWaitMs / 3) {
      this.#msg.working();
      this.#lastWorking = now;
    }
  }

  async #flushErrors(keep: number): Promise<void> {
    while (this.errors.length > keep) {
      const batch = this.errors.splice(0, ERRORS_PER_MESSAGE);
      await this.publisher.publish(
        subjects.errors(this.#shard.jobId),
        encodeErrorBatch({
          jobId: this.#shard.jobId,
          itemId: this.#shard.shardId,
          sequence: this.#errorSeq,
          errors: batch,
        }),
        `${this.#shard.shardId}.x${this.#errorSeq}`,
      );
      this.#errorSeq++;
    }
  }

  /** Reports the shard's result with `counters`, publishes the children it announces, acks. */
  async finish(
    counters: Partial<Pick<ItemResult, "scan" | "export" | "import" | "restore">>,
  ): Promise<void> {
    const { options } = this.#ctx;
    const shard = this.#shard;
    try {
      await this.#finish(options, shard, counters);
    } finally {
      this.stop();
    }
  }

  async #finish(
    options: ResolvedWorkerOptions,
    shard: WalkShard,
    counters: Partial<Pick<ItemResult, "scan" | "export" | "import" | "restore">>,
  ): Promise<void> {
    await this.#flushErrors(ERRORS_PER_MESSAGE);
    await this.publisher.flush();
    await options.hooks.beforeWalkResult?.(shard);
    // The result is the last word on this shard: everything it published went out before it.
    const attempt = this.#attempt;
    const window = this.#win;
    await window.announce(
      walkResultId(shard.shardId, attempt),
      newItemResult({
        jobId: shard.jobId,
        itemId: shard.shardId,
        kind: "walk",
        // The children still held: counted here, published right after (parked before).
        children: window.held,
        childIds: window.heldIds,
        errors: this.errors,
        workerId: options.workerId,
        attempt,
        ...counters,
      }),
    );
    await options.hooks.afterWalkShard?.(shard);
    this.#msg.ack();
  }
}
