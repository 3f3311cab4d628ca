import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { headerReader } from "@hsmfleet/bus";
import { displayPath, errorMessage } from "@hsmfleet/core";
import type { JobStatus } from "@hsmfleet/protocol";
import { startWorkItem, traceLogFields } from "@hsmfleet/telemetry";
import type { ResolvedWorkerOptions } from "../options.js";
import { reportFailedItem } from "../walk/walk-shard.js";
import { isLive } from "./job-cache.js";
import type { JobCache } from "./job-cache.js";
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
}

/** Runs one item with the bookkeeping every kind shares: job check, stats, last-attempt reporting. */
export const runWorkItem = async (
  ctx: RunItemContext,
  msg: JsMsg,
  maxDeliver: number,
  jobId: string,
  item: WorkItem,
  work: (job: JobStatus) => Promise<void>,
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
  try {
    await traced.run(() => work(job));
    ctx.stats.itemsDone++;
    traced.end("ok");
  } catch (err) {
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
    ctx.stats.itemsInFlight--;
  }
};
