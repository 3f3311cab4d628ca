import { DependencyError } from "@hsmfleet/core";
import type { JsMsg } from "@hsmfleet/bus";
import { CHUNK_CONSUMER, JobKind, TRANSFER_CONSUMER, WALK_CONSUMER } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { CHUNK_RULES, TRANSFER_BATCH_RULES, WALK_SHARD_RULES } from "./item-checks.js";
import type { WorkItemRules } from "./item-checks.js";
import type { ResolvedWorkerOptions } from "./options.js";
import type { ItemHandler, KindContext, KindHandlers } from "./runtime/job-kind.js";
import type { WorkItem } from "./runtime/run-item.js";

/** The handlers of each job kind on this worker, by kind. */
export type HandlersByKind = ReadonlyMap<JobKind, KindHandlers>;

/** A durable consumer on the work stream that every worker shares, whatever the job kind. */
export interface WorkConsumer {
  /** Consumer name on WORK_STREAM. */
  readonly consumer: string;
  readonly itemKind: WorkItem["kind"];
  /** Items this worker runs at once. */
  concurrency(options: ResolvedWorkerOptions): number;
  /** Decodes one item and runs it through its job kind's handler. */
  handle(msg: JsMsg, ctx: KindContext, maxDeliver: number, kinds: HandlersByKind): Promise<void>;
}

interface WorkConsumerSpec<T extends { jobId: string }> {
  consumer: string;
  itemKind: WorkItem["kind"];
  concurrency(options: ResolvedWorkerOptions): number;
  /** How an item is decoded and checked against its job (item-checks.ts). */
  rules: WorkItemRules<T>;
  /** The job, the item's id and its first path (logs, spans, failed-item reports). */
  identify(item: T): { jobId: string; itemId: string; path: Buffer };
  /** The handler for a job of this kind. */
  handler(job: JobStatus, kinds: HandlersByKind): ItemHandler<T>;
}

const workConsumer = <T extends { jobId: string }>(spec: WorkConsumerSpec<T>): WorkConsumer => ({
  consumer: spec.consumer,
  itemKind: spec.itemKind,
  concurrency: (options) => spec.concurrency(options),
  handle: async (msg, ctx, maxDeliver, kinds) => {
    const item = await ctx.admit(msg, spec.rules);
    if (item === undefined) return;
    const { jobId, itemId, path } = spec.identify(item);
    return ctx.runItem(
      msg,
      maxDeliver,
      jobId,
      { itemId, kind: spec.itemKind, path },
      async (job) => {
        await spec.handler(job, kinds)(msg, item, job);
      },
    );
  },
});

const noPath = (): Buffer => Buffer.alloc(0);

/** A kind's handler, else `fallback`'s (the kinds without one of their own). */
const handlerOf = <K extends "walk" | "transfer">(
  which: K,
  job: JobStatus,
  kinds: HandlersByKind,
  fallback: JobKind,
): NonNullable<KindHandlers[K]> => {
  const handler = kinds.get(job.spec.kind)?.[which] ?? kinds.get(fallback)?.[which];
  if (handler === undefined)
    throw new DependencyError(`job ${job.spec.jobId}: no ${which} handler on this worker`);
  return handler;
};

/**
 * The shared consumers, in the order they start: walk shards (a kind without a walk handler of
 * its own counts entries, as a scan does), chunks (a kind without a chunk handler fails the item)
 * and transfer batches (a kind without a transfer handler uploads them, as an export does).
 */
export const WORK_CONSUMERS: readonly WorkConsumer[] = [
  workConsumer({
    consumer: WALK_CONSUMER,
    itemKind: "walk",
    concurrency: (o) => o.concurrency,
    rules: WALK_SHARD_RULES,
    identify: (s) => ({ jobId: s.jobId, itemId: s.shardId, path: s.paths[0] ?? noPath() }),
    handler: (job, kinds) => handlerOf("walk", job, kinds, JobKind.Scan),
  }),
  workConsumer({
    consumer: CHUNK_CONSUMER,
    itemKind: "chunk",
    concurrency: (o) => o.transferConcurrency,
    rules: CHUNK_RULES,
    identify: (c) => ({ jobId: c.jobId, itemId: c.chunkId, path: c.path }),
    handler: (job, kinds) =>
      kinds.get(job.spec.kind)?.chunk ??
      (() => {
        throw new DependencyError(
          `job ${job.spec.jobId}: chunk items of this job kind are not handled by this worker version`,
        );
      }),
  }),
  workConsumer({
    consumer: TRANSFER_CONSUMER,
    itemKind: "transfer",
    concurrency: (o) => o.transferConcurrency,
    rules: TRANSFER_BATCH_RULES,
    identify: (b) => ({ jobId: b.jobId, itemId: b.batchId, path: b.entries[0]?.path ?? noPath() }),
    handler: (job, kinds) => handlerOf("transfer", job, kinds, JobKind.Export),
  }),
];
