import { JobKind } from "@hsmfleet/protocol";
import { isLive } from "../runtime/job-cache.js";
import type { WorkerJobKind } from "../runtime/job-kind.js";
import { HsmActionRunner } from "./hsm-action.js";

/** HSM actions: action lists pulled from the FID-hash partitions (their own consumers). */
export const hsmKind: WorkerJobKind = {
  kind: JobKind.Hsm,
  start: (ctx) => {
    const runner = new HsmActionRunner({
      nc: ctx.options.nc,
      js: ctx.js,
      workerId: ctx.options.workerId,
      job: (jobId) => ctx.jobs.get(jobId),
      isLive,
      container: (job, name) => ctx.containerNamed(name ?? job.spec.container, job),
      budget: ctx.budget,
      blockConcurrency: ctx.options.blockConcurrency,
      pullSignal: ctx.pullSignal,
      abortSignal: ctx.abortSignal,
      lfsPath: ctx.options.lfsPath,
      onBytes: (n) => {
        ctx.stats.bytesMoved += n;
      },
      onItems: (done, failed) => {
        ctx.stats.itemsDone += done;
        ctx.stats.itemsFailed += failed;
      },
      logger: ctx.options.logger,
    });
    return { run: () => runner.run(), cancel: (jobId) => runner.cancelJob(jobId) };
  },
};
