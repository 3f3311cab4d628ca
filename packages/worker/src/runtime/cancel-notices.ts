import type { JobStore, NatsConnection } from "@hsmfleet/bus";
import { errorMessage } from "@hsmfleet/core";
import { JOB_ID_PATTERN, JobState, subjects } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";
import type { JobCache } from "./job-cache.js";

/**
 * Listens for cancel notices (core NATS hsmfleet.jobcancel.<job>, sent by a coordinator that
 * cancels a job). A notice is untrusted: it only makes this worker read the job record again, and
 * `onCancel` runs only when the record says the job is being cancelled (or was). Returns the
 * unsubscribe.
 */
export const listenForCancels = (
  nc: NatsConnection,
  jobs: JobCache,
  store: JobStore,
  onCancel: (jobId: string) => void,
  logger: Logger | undefined,
): (() => void) => {
  const onNotice = async (jobId: string) => {
    jobs.forget(jobId);
    const job = await store.get(jobId);
    if (job?.state !== JobState.Cancelling && job?.state !== JobState.Cancelled) return;
    logger?.info({ jobId }, "job cancelled: stopping its items here");
    onCancel(jobId);
  };
  const sub = nc.subscribe(subjects.jobCancelAll, {
    callback: (err, m) => {
      if (err) return;
      const jobId = m.subject.slice(subjects.jobCancel("").length);
      if (!JOB_ID_PATTERN.test(jobId)) return;
      onNotice(jobId).catch((e: unknown) =>
        logger?.warn({ jobId, err: errorMessage(e) }, "could not act on a cancel notice"),
      );
    },
  });
  return () => sub.unsubscribe();
};
