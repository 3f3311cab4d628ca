import { runWorkConsumer } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { WORK_STREAM } from "@hsmfleet/protocol";
import { isLive, wantedBy } from "./job-cache.js";
import type { ConsumerLogging, KindContext } from "./job-kind.js";

/** A kind whose items come from one consumer per job (restore, sync, autoimport). */
export interface JobPullers {
  /** The job kind whose live records start a puller. */
  kind: number;
  /** For log lines, e.g. "sync". */
  name: string;
  /** The job's durable consumer on the WORK stream. */
  consumer: (jobId: string) => string;
  handle: (msg: JsMsg) => Promise<void>;
}

/**
 * One pull loop per live job of `p.kind` (its consumer), found by watching the job records (only
 * the records it needs are decoded: job-cache.ts wantedBy); a loop stops when its job ends, all
 * when the worker stops pulling. A consumer that is gone (the job ended before its record said
 * so) ends its loop quietly; a later live record starts it again.
 */
export const runJobPullers = async (
  ctx: KindContext,
  logging: ConsumerLogging,
  p: JobPullers,
): Promise<void> => {
  const pullers = new Map<string, AbortController>();
  const done: Promise<void>[] = [];
  const start = (jobId: string) => {
    if (pullers.has(jobId) || ctx.pullSignal.aborted) return;
    const abort = new AbortController();
    pullers.set(jobId, abort);
    done.push(
      runWorkConsumer(ctx.options.nc, {
        stream: WORK_STREAM,
        consumer: p.consumer(jobId),
        concurrency: ctx.options.transferConcurrency,
        signal: AbortSignal.any([abort.signal, ctx.pullSignal]),
        handle: p.handle,
        ...logging,
      }).catch((err: unknown) => {
        if (pullers.get(jobId) === abort) pullers.delete(jobId);
        ctx.options.logger?.debug({ jobId, err: errorMessage(err) }, `${p.name} consumer gone`);
      }),
    );
  };
  // Shared with the other kinds' pullers and the process's other workers (JobStore.watchLive).
  const watcher = await ctx.jobStore.watchLive(
    (job) => {
      if (job.spec.kind !== p.kind) return;
      const jobId = job.spec.jobId;
      if (isLive(job)) start(jobId);
      else {
        pullers.get(jobId)?.abort();
        pullers.delete(jobId);
      }
    },
    logging.onLost,
    wantedBy(p.kind, pullers),
  );
  await new Promise<void>((resolve) => {
    if (ctx.pullSignal.aborted) resolve();
    else ctx.pullSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  watcher.stop();
  await Promise.allSettled(done);
};
