import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { terminateMessage } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { encodeErrorBatch, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import {
  RefusedWorkItemError,
  UnsafeWorkItemError,
  UnsolicitedWorkItemError,
  admitWorkItem,
  jobOfWorkSubject,
} from "../item-checks.js";
import type { WorkItemRules } from "../item-checks.js";
import type { ResolvedWorkerOptions } from "../options.js";
import { reportFailedItem } from "../walk/walk-shard.js";
import { isLive } from "./job-cache.js";
import type { JobCache } from "./job-cache.js";

export interface AdmitContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  jobs: JobCache;
}

/**
 * Decodes and checks a work item before anything is done for it (item-checks.ts): it decodes,
 * names its subject's job, carries the job's seal, and its paths and numbers are safe. A refused
 * item is terminated (never redelivered), logged with its subject and stream sequence, and
 * recorded in its job's error log when it names a running job. Undefined when refused. An item
 * whose seal the cached job record refuses is checked again against the record read afresh (the
 * job may have been re-created with a new key since it was cached). Items of
 * jobs that are not running pass (runWorkItem drops them).
 */
export const admitItem = async <T extends { jobId: string }>(
  ctx: AdmitContext,
  msg: JsMsg,
  rules: WorkItemRules<T>,
): Promise<T | undefined> => {
  let job: JobStatus | undefined;
  try {
    const jobId = jobOfWorkSubject(msg.subject);
    job = await ctx.jobs.get(jobId);
    try {
      return admitWorkItem(msg, job, rules);
    } catch (err) {
      if (!(err instanceof UnsolicitedWorkItemError)) throw err;
      // The cached record may be older than the job's item key: a job record re-created under
      // the same id (a restarted sync service: a fresh record and key each start) seals its
      // items with a key the cache does not hold yet. Refusing them would lose them (terminated,
      // and the service waits out its item timeout): the record is read again before refusing.
      ctx.jobs.forget(jobId);
      job = await ctx.jobs.get(jobId);
      return admitWorkItem(msg, job, rules);
    }
  } catch (err) {
    if (!(err instanceof RefusedWorkItemError)) throw err;
    await refuse(ctx, msg, err, isLive(job) ? job : undefined);
    return undefined;
  }
};

const refuse = async (
  ctx: AdmitContext,
  msg: JsMsg,
  err: RefusedWorkItemError,
  job: JobStatus | undefined,
): Promise<void> => {
  const seq = msg.info.streamSequence;
  ctx.options.logger?.warn(
    { subject: msg.subject, seq, code: err.code, jobId: job?.spec.jobId, err: err.message },
    `${err.name}: work item terminated`,
  );
  if (job !== undefined && err instanceof UnsafeWorkItemError && err.item !== undefined) {
    // Sealed by the job, so the job waits for it: a failed result ends it as an error of the
    // job (reportFailedItem terminates the message).
    await reportFailedItem(
      { js: ctx.js, options: ctx.options },
      msg,
      { jobId: job.spec.jobId, ...err.item },
      err,
    );
    return;
  }
  terminateMessage(ctx.options.nc, msg, `${err.name}: ${err.message}`);
  if (job === undefined) return;
  const jobId = job.spec.jobId;
  await ctx.js
    .publish(
      subjects.errors(jobId),
      encodeErrorBatch({
        jobId,
        itemId: `refused.${seq}`,
        sequence: 0,
        errors: [
          {
            path: Buffer.alloc(0),
            operation: "receive",
            code: err.code,
            message: `${err.name}: ${err.message} (stream sequence ${seq})`,
            retryable: false,
          },
        ],
      }),
      { msgID: `${jobId}.refused.${seq}` },
    )
    .catch((e: unknown) =>
      ctx.options.logger?.warn(
        { jobId, err: errorMessage(e) },
        "could not record a refused work item in the job's error log",
      ),
    );
};
