import { runWorkConsumer } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { errorMessage, normalizePrefix } from "@hsmfleet/core";
import {
  JobKind,
  WORK_STREAM,
  emptySyncCounters,
  encodeSyncResult,
  syncSubjects,
} from "@hsmfleet/protocol";
import type { JobStatus, SyncBatch, SyncFailure } from "@hsmfleet/protocol";
import { SYNC_BATCH_RULES } from "../item-checks.js";
import { isLive, wantedBy } from "../runtime/job-cache.js";
import type { ConsumerLogging, KindContext, WorkerJobKind } from "../runtime/job-kind.js";
import { forEachLimit } from "../runtime/transfer-batch.js";
import { applySyncOp } from "./sync-apply.js";

/**
 * Applies one batch of a sync service: its operations touch distinct paths (the service keeps
 * operations on one path in separate, ordered batches), so they run concurrently. The result
 * goes to the service under `<batch>.r` (a redelivered batch's result is dropped as a duplicate).
 */
const applyBatch = async (
  ctx: KindContext,
  msg: JsMsg,
  batch: SyncBatch,
  job: JobStatus,
  signal: AbortSignal,
): Promise<void> => {
  const counters = emptySyncCounters();
  const requeue: Buffer[] = [];
  const failures: SyncFailure[] = [];
  const container = await ctx.container(job);
  const apply = {
    transfer: ctx.transfer,
    container,
    root: job.spec.root,
    prefix: normalizePrefix(job.spec.prefix),
    blockSize: job.spec.blockSize,
    signal,
    counters,
    requeue,
    failures,
  };
  await forEachLimit(batch.ops, Math.max(1, ctx.options.fileConcurrency), (op) =>
    applySyncOp(apply, op),
  );
  ctx.stats.bytesMoved += counters.bytesExported;
  await ctx.js.publish(
    syncSubjects.result(batch.jobId),
    encodeSyncResult({
      jobId: batch.jobId,
      batchId: batch.batchId,
      workerId: ctx.options.workerId,
      counters,
      requeue,
      failures,
    }),
    { msgID: `${batch.batchId}.r` },
  );
  msg.ack();
};

const handleSync = async (ctx: KindContext, maxDeliver: number, msg: JsMsg): Promise<void> => {
  const batch = await ctx.admit(msg, SYNC_BATCH_RULES);
  if (batch === undefined) return;
  return ctx.runItem(
    msg,
    maxDeliver,
    batch.jobId,
    { itemId: batch.batchId, kind: "transfer", path: batch.ops[0]?.path ?? Buffer.alloc(0) },
    (job, scope) => applyBatch(ctx, msg, batch, job, scope.signal),
  );
};

/** One pull loop per running sync service (its consumer `sync-<job>`), found by watching jobs. */
const runSyncPullers = async (ctx: KindContext, logging: ConsumerLogging): Promise<void> => {
  const pullers = new Map<string, AbortController>();
  const done: Promise<void>[] = [];
  const start = (job: JobStatus) => {
    const jobId = job.spec.jobId;
    if (pullers.has(jobId) || ctx.pullSignal.aborted) return;
    const abort = new AbortController();
    pullers.set(jobId, abort);
    done.push(
      runWorkConsumer(ctx.options.nc, {
        stream: WORK_STREAM,
        consumer: syncSubjects.consumer(jobId),
        concurrency: ctx.options.transferConcurrency,
        signal: AbortSignal.any([abort.signal, ctx.pullSignal]),
        handle: (msg) => handleSync(ctx, ctx.transferLimits.maxDeliver, msg),
        ...logging,
      }).catch((err: unknown) => {
        pullers.delete(jobId);
        ctx.options.logger?.debug({ jobId, err: errorMessage(err) }, "sync consumer gone");
      }),
    );
  };
  const watcher = await ctx.jobStore.watchAll(
    (job) => {
      if (job.spec.kind !== JobKind.Sync) return;
      const jobId = job.spec.jobId;
      if (isLive(job)) start(job);
      else {
        pullers.get(jobId)?.abort();
        pullers.delete(jobId);
      }
    },
    logging.onLost,
    wantedBy(JobKind.Sync, pullers),
  );
  await new Promise<void>((resolve) => {
    if (ctx.pullSignal.aborted) resolve();
    else ctx.pullSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  watcher.stop();
  await Promise.allSettled(done);
};

/** Sync: batches of a running `hsmfleet sync` service, pulled from its own consumer. */
export const syncKind: WorkerJobKind = {
  kind: JobKind.Sync,
  start: (ctx) => ({
    run: () => runSyncPullers(ctx, ctx.logging("transfer", ctx.transferLimits)),
  }),
};
