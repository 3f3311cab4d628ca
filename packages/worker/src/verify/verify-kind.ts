import { JobKind } from "@hsmfleet/protocol";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { handleWalkShard } from "../walk/walk-shard.js";
import { handleVerifyBatch } from "./verify-batch.js";
import { verifyVisitor } from "./verify-visitor.js";

/** Verify: walk shards compared with the blobs, batches of files whose content is compared. */
export const verifyKind: WorkerJobKind = {
  kind: JobKind.Verify,
  start: (ctx) => ({
    walk: async (msg, shard, job) =>
      handleWalkShard(
        ctx.walk,
        msg,
        shard,
        job,
        verifyVisitor(await ctx.container(job), ctx.options.listingWindowEntries),
      ),
    transfer: async (msg, batch, job, scope) => {
      const container = await ctx.container(job);
      await handleVerifyBatch(
        scope.transfer(ctx.transfer),
        msg,
        batch,
        job,
        container,
        scope.signal,
      );
    },
  }),
};
