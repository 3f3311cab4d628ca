import { AckPolicy, DeliverPolicy, JetStreamApiError } from "@nats-io/jetstream";
import type { JetStreamManager } from "@nats-io/jetstream";
import { WORK_STREAM } from "@hsmfleet/protocol";
import { withJetStreamRetry } from "./jetstream-retry.js";

export interface JobConsumerOptions {
  /** Durable name, e.g. restoreConsumer(jobId). */
  name: string;
  /** The job's own subject on the work stream (must not overlap the shared consumers' filters). */
  filterSubject: string;
  /**
   * Items handed out and not yet acknowledged, across every worker: the fleet-wide in-flight
   * bound of the job.
   */
  maxAckPending: number;
  ackWaitMs: number;
  maxDeliver: number;
}

const nanos = (ms: number): number => ms * 1_000_000;

/**
 * Creates (or updates) a durable pull consumer that belongs to one job. Its max_ack_pending is
 * enforced by the server, so it bounds the job's outstanding items however many workers pull.
 */
export const ensureJobConsumer = async (
  jsm: JetStreamManager,
  o: JobConsumerOptions,
): Promise<void> => {
  const config = {
    durable_name: o.name,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    filter_subject: o.filterSubject,
    ack_wait: nanos(o.ackWaitMs),
    max_deliver: o.maxDeliver,
    max_ack_pending: o.maxAckPending,
  };
  // Safe to repeat: a consumer created by a try that timed out is found and updated by the next.
  await withJetStreamRetry(`create the consumer ${o.name} on stream ${WORK_STREAM}`, async () => {
    try {
      await jsm.consumers.info(WORK_STREAM, o.name);
      await jsm.consumers.update(WORK_STREAM, o.name, config);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) {
        await jsm.consumers.add(WORK_STREAM, config);
      } else {
        throw err;
      }
    }
  });
};

/** Removes a job's consumer when the job ends (a missing one is fine). */
export const deleteJobConsumer = async (jsm: JetStreamManager, name: string): Promise<void> => {
  try {
    await jsm.consumers.delete(WORK_STREAM, name);
  } catch (err) {
    if (!(err instanceof JetStreamApiError && err.status === 404)) throw err;
  }
};
