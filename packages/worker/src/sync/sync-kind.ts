import type { JsMsg } from "@hsmfleet/bus";
import { normalizePrefix } from "@hsmfleet/core";
import { JobKind, emptySyncCounters, encodeSyncResult, syncSubjects } from "@hsmfleet/protocol";
import type { JobStatus, SyncBatch, SyncFailure } from "@hsmfleet/protocol";
import { SYNC_BATCH_RULES } from "../item-checks.js";
import { runJobPullers } from "../runtime/job-pullers.js";
import type { KindContext, WorkerJobKind } from "../runtime/job-kind.js";
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

/** Sync: batches of a running `hsmfleet sync` service, pulled from its own consumer. */
export const syncKind: WorkerJobKind = {
  kind: JobKind.Sync,
  start: (ctx) => ({
    run: () =>
      runJobPullers(ctx, ctx.logging("transfer", ctx.transferLimits), {
        kind: JobKind.Sync,
        name: "sync",
        consumer: syncSubjects.consumer,
        handle: (msg) => handleSync(ctx, ctx.transferLimits.maxDeliver, msg),
      }),
  }),
};
