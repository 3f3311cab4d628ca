import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { headerReader } from "@hsmfleet/bus";
import { displayPath, errorMessage } from "@hsmfleet/core";
import { encodeItemResult, newItemResult, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startWorkItem, traceLogFields } from "@hsmfleet/telemetry";
import type { ResolvedWorkerOptions } from "../options.js";
import { reportFailedItem } from "../walk/walk-shard.js";
import type { ItemProgressTracker, LiveItem } from "./item-progress.js";
import { isLive } from "./job-cache.js";
import type { JobCache } from "./job-cache.js";
import type { TransferContext } from "./transfer-batch.js";
import type { WorkerStats } from "./worker-stats.js";

/** One work item as logs, spans and failed-item reports name it. */
export interface WorkItem {
  itemId: string;
  kind: "walk" | "transfer" | "chunk";
  path: Buffer;
}

export interface RunItemContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  jobs: JobCache;
  stats: WorkerStats;
  /** Items in flight: reported to their coordinators, stopped by their job's cancel. */
  progress: ItemProgressTracker;
  /** Aborts in-flight work (worker shutdown). */
  abortSignal: AbortSignal;
}

/** One item's own view of the worker while it runs. */
export interface ItemScope {
  /** The item in flight: its counters and bytes are reported as the job's progress. */
  readonly live: LiveItem;
  /** Aborted when the worker stops or the item's job is cancelled. */
  readonly signal: AbortSignal;
  /** `base` whose bytes and counters are also the item's (shown before it ends). */
  transfer(base: TransferContext): TransferContext;
}

const itemScope = (live: LiveItem, abortSignal: AbortSignal): ItemScope => ({
  live,
  signal: AbortSignal.any([abortSignal, live.signal]),
  transfer: (base) => ({
    ...base,
    onBytes: (n) => {
      live.bytes += n;
      base.onBytes(n);
    },
    track: (counters) => {
      live.counters = counters;
    },
  }),
});

/** Runs one item with the bookkeeping every kind shares: job check, stats, last-attempt reporting. */
export const runWorkItem = async (
  ctx: RunItemContext,
  msg: JsMsg,
  maxDeliver: number,
  jobId: string,
  item: WorkItem,
  work: (job: JobStatus, scope: ItemScope) => Promise<void>,
): Promise<void> => {
  const traced = startWorkItem(headerReader(msg), {
    ...item,
    jobId,
    workerId: ctx.options.workerId,
    attempt: msg.info.deliveryCount,
    key: msg,
  });
  const job = await ctx.jobs.get(jobId);
  if (!isLive(job)) {
    // Cancelled, finished or unknown job: nothing to do, and nobody to redeliver to.
    msg.term();
    traced.end("skipped");
    return;
  }
  ctx.stats.itemsInFlight++;
  const live = ctx.progress.start(
    jobId,
    item.itemId,
    msg.info.deliveryCount,
    job.spec.kind,
    job.spec.itemKey,
  );
  try {
    await traced.run(() => work(job, itemScope(live, ctx.abortSignal)));
    ctx.stats.itemsDone++;
    traced.end("ok");
  } catch (err) {
    if (live.signal.aborted && !ctx.abortSignal.aborted) {
      traced.end("skipped");
      await reportCancelled(ctx, msg, jobId, item, live);
      return;
    }
    traced.end(msg.info.deliveryCount >= maxDeliver ? "failed" : "retry", err);
    if (msg.info.deliveryCount >= maxDeliver) {
      ctx.stats.itemsFailed++;
      ctx.options.logger?.error(
        {
          jobId,
          item: item.itemId,
          path: displayPath(item.path),
          err: errorMessage(err),
          ...traceLogFields(msg),
        },
        `${item.kind} item failed on its last attempt`,
      );
      await reportFailedItem({ js: ctx.js, options: ctx.options }, msg, { jobId, ...item }, err);
      return;
    }
    throw err;
  } finally {
    ctx.progress.end(live);
    ctx.stats.itemsInFlight--;
  }
};

/**
 * An item stopped because its job was cancelled: not a failure. Its result counts what it
 * finished (under the id its full result would have, so only one of them is ever counted) and
 * the item is not handed back.
 */
const reportCancelled = async (
  ctx: RunItemContext,
  msg: JsMsg,
  jobId: string,
  item: WorkItem,
  live: LiveItem,
): Promise<void> => {
  ctx.options.logger?.info(
    { jobId, item: item.itemId, kind: item.kind },
    `${item.kind} item cancelled with its job`,
  );
  await ctx.js.publish(
    subjects.itemResult(jobId),
    encodeItemResult(
      newItemResult({
        jobId,
        itemId: item.itemId,
        kind: item.kind,
        workerId: ctx.options.workerId,
        attempt: msg.info.deliveryCount,
        ...live.counters,
      }),
    ),
    { msgID: `${item.itemId}.r` },
  );
  msg.term();
};
