import { JobStore, ensureTopology, jetstream } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { JobError } from "@hsmfleet/core";
import { JobState, WORK_STREAM, jobStateName, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";

export const openJobStore = async (
  nc: NatsConnection,
  topology?: TopologyOptions,
): Promise<JobStore> => {
  const { jobs } = await ensureTopology(nc, topology);
  return new JobStore(jobs);
};

/** How a cancel went. */
export interface CancelOutcome {
  /** The job record at the end. */
  status: JobStatus;
  /**
   * "coordinator": the job's coordinator stopped it (state cancelled). "takeover": no coordinator
   * answered (it is gone): the queued work was dropped, the workers told to stop its items, and
   * the record marked cancelled here. "ended": it ended by itself before the cancel took effect.
   * "pending": its coordinator is alive but has not finished cancelling in time (still
   * cancelling).
   */
  outcome: "coordinator" | "takeover" | "ended" | "pending";
}

export const CANCEL_DEFAULTS = {
  /** A coordinator that has not written the job record within this time after the request is gone. */
  answerMs: 5000,
  /** How long a live coordinator gets to finish cancelling (its items report what they finished). */
  finishMs: 30_000,
} as const;

/**
 * Asks the job's coordinator to stop (the record says cancelling; every worker gets a notice and
 * stops the job's items) and waits until the record says cancelled. A coordinator that does not
 * write the record within `answerMs` is gone: then the queued work is purged and the job marked
 * cancelled here. Any job kind (scan, export, import, restore, verify, HSM).
 */
export const cancelJob = async (
  nc: NatsConnection,
  jobId: string,
  options: { answerMs?: number; finishMs?: number } = {},
): Promise<CancelOutcome> => {
  const answerMs = options.answerMs ?? CANCEL_DEFAULTS.answerMs;
  const finishMs = options.finishMs ?? CANCEL_DEFAULTS.finishMs;
  const store = await openJobStore(nc);
  const status = await store.require(jobId);
  if (
    status.state !== JobState.Running &&
    status.state !== JobState.Pending &&
    status.state !== JobState.Cancelling
  ) {
    throw new JobError(
      jobId,
      `job ${jobId} has already ended (${jobStateName(status.state)}); nothing to cancel`,
    );
  }
  const askedAtMs = Date.now();
  status.state = JobState.Cancelling;
  status.updatedAtMs = askedAtMs;
  await store.put(status);
  nc.publish(subjects.jobCancel(jobId));
  let answered = false;
  const deadline = askedAtMs + answerMs + finishMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await store.require(jobId);
    if (now.state === JobState.Cancelled) return { status: now, outcome: "coordinator" };
    if (now.state !== JobState.Cancelling && now.state !== JobState.Running)
      return { status: now, outcome: "ended" };
    // The coordinator writes the record at least every second while it runs.
    if (now.updatedAtMs > askedAtMs) answered = true;
    if (!answered && Date.now() - askedAtMs >= answerMs) break;
  }
  if (answered) return { status: await store.require(jobId), outcome: "pending" };
  const jsm = await jetstream(nc).jetstreamManager();
  await jsm.streams.purge(WORK_STREAM, { filter: subjects.workForJob(jobId) });
  const final = await store.require(jobId);
  final.state = JobState.Cancelled;
  final.reason =
    "cancelled by request (no coordinator answered: queued work dropped, workers told to stop its items)";
  final.finishedAtMs = Date.now();
  await store.put(final);
  nc.publish(subjects.jobCancel(jobId));
  await nc.flush();
  return { status: final, outcome: "takeover" };
};
