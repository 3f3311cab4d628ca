import { JobKind } from "@hsmfleet/protocol";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { handleImportChunk } from "./import-chunk.js";
import { handleImportDownload } from "./import-download.js";
import { handleImportShard } from "./import-shard.js";
import { ImportTargets } from "./import-targets.js";

/** Import: blob listings walked into the target, files downloaded (large ones in chunks). */
export const importKind: WorkerJobKind = {
  kind: JobKind.Import,
  start: (ctx) => {
    const targets = new ImportTargets(ctx.options.lfsPath);
    return {
      walk: async (msg, shard, job) => {
        const [container, target] = await Promise.all([ctx.container(job), targets.for(job)]);
        await handleImportShard(ctx.walk, msg, shard, job, container, target);
      },
      transfer: async (msg, batch, job, scope) => {
        const container = await ctx.container(job);
        const target = await targets.for(job);
        await handleImportDownload(
          scope.transfer(ctx.transfer),
          msg,
          batch,
          job,
          container,
          target,
          scope.signal,
        );
      },
      chunk: async (msg, chunk, job, scope) => {
        const [container, target] = await Promise.all([ctx.container(job), targets.for(job)]);
        await handleImportChunk(
          scope.transfer(ctx.chunk),
          msg,
          chunk,
          job,
          container,
          target,
          ctx.chunks,
          scope.signal,
        );
      },
    };
  },
};
