import type { JsMsg } from "@hsmfleet/bus";
import { JobKind, restoreConsumer } from "@hsmfleet/protocol";
import { TRANSFER_BATCH_RULES } from "../item-checks.js";
import { runJobPullers } from "../runtime/job-pullers.js";
import type { KindContext, WorkerJobKind } from "../runtime/job-kind.js";
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

/** Restore: walk shards finding released files, their batches pulled from a consumer per job. */
export const restoreKind: WorkerJobKind = {
  kind: JobKind.Restore,
  start: (ctx) => ({
    walk: (msg, shard, job) => handleWalkShard(ctx.walk, msg, shard, job, restoreVisitor),
    // A consumer per job (its max_ack_pending is the job's fleet-wide --max-inflight), pulled
    // from while the job runs.
    run: () =>
      runJobPullers(ctx, ctx.logging("transfer", ctx.transferLimits), {
        kind: JobKind.Restore,
        name: "restore",
        consumer: restoreConsumer,
        handle: (msg) => handleRestore(ctx, ctx.transferLimits.maxDeliver, msg),
      }),
  }),
};
