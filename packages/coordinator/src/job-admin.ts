import { JobStore, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { JobError } from "@hsmfleet/core";
import { JobState, WORK_STREAM, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";

export const openJobStore = async (
  nc: NatsConnection,
  topology?: TopologyOptions,
): Promise<JobStore> => {
  const { jobs } = await ensureTopology(nc, topology);
  return new JobStore(jobs);
};

/**
 * Asks the job's coordinator to stop; if no coordinator acts within `waitMs` (it died), purges the
 * queued work and marks the job cancelled directly.
 */
export const cancelJob = async (
  nc: NatsConnection,
  jobId: string,
  waitMs = 5000,
): Promise<JobStatus> => {
  const store = await openJobStore(nc);
  const status = await store.require(jobId);
  if (
    status.state !== JobState.Running &&
    status.state !== JobState.Pending &&
    status.state !== JobState.Cancelling
  ) {
    throw new JobError(jobId, `job ${jobId} has already ended; nothing to cancel`);
  }
  status.state = JobState.Cancelling;
  status.updatedAtMs = Date.now();
  await store.put(status);
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await store.require(jobId);
    if (now.state === JobState.Cancelled) return now;
  }
  const jsm = await jetstream(nc).jetstreamManager();
  await jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(jobId) });
  const final = await store.require(jobId);
  final.state = JobState.Cancelled;
  final.reason = "cancelled by request (no coordinator answered; queued work purged)";
  final.finishedAtMs = Date.now();
  await store.put(final);
  return final;
};
