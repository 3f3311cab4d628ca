import { JobKind } from "@hsmfleet/protocol";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { handleTransferBatch } from "../runtime/transfer-batch.js";
import { handleWalkShard } from "../walk/walk-shard.js";
import { handleExportChunk } from "./export-chunk.js";
import { NULL_LISTING, exportVisitor } from "./export-visitor.js";

/** Export: walk shards compared with the blobs, transfer batches uploaded, large files in chunks. */
export const exportKind: WorkerJobKind = {
  kind: JobKind.Export,
  start: (ctx) => ({
    walk: async (msg, shard, job) =>
      handleWalkShard(
        ctx.walk,
        msg,
        shard,
        job,
        exportVisitor(
          ctx.options.nullTarget ? NULL_LISTING : await ctx.container(job),
          ctx.options.listingWindowEntries,
        ),
      ),
    transfer: async (msg, batch, job, scope) => {
      // The null target (benchmarks) needs no client: the Azure SDK is not even loaded.
      const container = ctx.options.nullTarget ? undefined : await ctx.container(job);
      await handleTransferBatch(
        scope.transfer(ctx.transfer),
        msg,
        batch,
        job,
        container,
        scope.signal,
      );
    },
    chunk: async (msg, chunk, job, scope) => {
      const container = await ctx.container(job);
      await handleExportChunk(
        scope.transfer(ctx.chunk),
        msg,
        chunk,
        job,
        container,
        ctx.chunks,
        scope.signal,
      );
    },
  }),
};
