import { runWorkConsumer } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { JobKind, WORK_STREAM, restoreConsumer } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { TRANSFER_BATCH_RULES } from "../item-checks.js";
import { isLive, wantedBy } from "../runtime/job-cache.js";
import type { ConsumerLogging, KindContext, WorkerJobKind } from "../runtime/job-kind.js";
import { handleWalkShard } from "../walk/walk-shard.js";
import { handleRestoreBatch } from "./restore-batch.js";
import { handleLustreRestore } from "./restore-lustre.js";
import { restoreVisitor } from "./restore-visitor.js";

const handleRestore = async (ctx: KindContext, maxDeliver: number, msg: JsMsg): Promise<void> => {
  const batch = await ctx.admit(msg, TRANSFER_BATCH_RULES);
  if (batch === undefined) return;
  const first = batch.entries[0]?.path ?? Buffer.alloc(0);
  return ctx.runItem(
    msg,
    maxDeliver,
    batch.jobId,
    { itemId: batch.batchId, kind: "transfer", path: first },
    (job, scope) =>
      job.spec.backend === "lustre"
        ? handleLustreRestore(scope.transfer(ctx.transfer), msg, batch, job, scope.signal)
        : handleRestoreBatch(
            scope.transfer(ctx.transfer),
            msg,
            batch,
            job,
            (name) => ctx.containerNamed(name, job),
            scope.signal,
          ),
  );
};

/**
 * Restore jobs have a consumer each (its max_ack_pending is the job's fleet-wide --max-inflight):
 * pull from it while the job runs. Jobs are found by watching the job records.
 */
const runRestorePullers = async (ctx: KindContext, logging: ConsumerLogging): Promise<void> => {
  const pullers = new Map<string, { abort: AbortController; done: Promise<void> }>();
  const consumerLimits = { ...ctx.transferLimits };
  const start = (job: JobStatus) => {
    const jobId = job.spec.jobId;
    if (pullers.has(jobId) || ctx.pullSignal.aborted) return;
    const abort = new AbortController();
    const signal = AbortSignal.any([abort.signal, ctx.pullSignal]);
    const done = runWorkConsumer(ctx.options.nc, {
      stream: WORK_STREAM,
      consumer: restoreConsumer(jobId),
      concurrency: ctx.options.transferConcurrency,
      signal,
      handle: (msg) => handleRestore(ctx, consumerLimits.maxDeliver, msg),
      ...logging,
    }).catch((err: unknown) => {
      // The consumer is made before the job record says "running"; a missing one means the job ended.
      ctx.options.logger?.debug({ jobId, err: errorMessage(err) }, "restore consumer gone");
    });
    pullers.set(jobId, { abort, done });
  };
  const stop = (jobId: string) => {
    const p = pullers.get(jobId);
    if (!p) return;
    p.abort.abort();
    pullers.delete(jobId);
  };
  const watcher = await ctx.jobStore.watchAll(
    (job) => {
      if (job.spec.kind !== JobKind.Restore) return;
      const jobId = job.spec.jobId;
      if (isLive(job)) start(job);
      else stop(jobId);
    },
    logging.onLost,
    wantedBy(JobKind.Restore, pullers),
  );
  await new Promise<void>((resolve) => {
    if (ctx.pullSignal.aborted) resolve();
    else ctx.pullSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  watcher.stop();
  await Promise.allSettled([...pullers.values()].map((p) => p.done));
};

/** Restore: walk shards finding released files, their batches pulled from a consumer per job. */
export const restoreKind: WorkerJobKind = {
  kind: JobKind.Restore,
  start: (ctx) => ({
    walk: (msg, shard, job) => handleWalkShard(ctx.walk, msg, shard, job, restoreVisitor),
    run: () => runRestorePullers(ctx, ctx.logging("transfer", ctx.transferLimits)),
  }),
};
