/**
 * The attempt number of a run of a work item, claimed rather than read off the server's delivery
 * count. nats-server before 2.10.15 can redeliver a message whose worker died with a delivery
 * count of 1 (nats-io/nats-server#5346, fixed by #5338); a walk shard that took that to mean
 * "no earlier run" reused the first run's declaration ids, skipped the replay of what that run
 * declared, and counted the files it had finished as preexisting (docs/reliability.md).
 *
 * A run publishes an empty marker on the job's `park` subject (WORK stream, no consumer) under
 * the message id `<item>.run<n>`, for n from the delivery count upward, until the publish is not
 * a duplicate: n is its attempt. The marker it stored is deleted at once: JetStream keeps a
 * message id in its duplicate window after the message is gone, and the WORK stream then holds
 * no marker per shard. A first delivery pays a publish and a delete. The duplicate window must
 * already outlast ackWait × maxDeliver (topology.ts), so it covers every run of an item.
 */
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import { WORK_STREAM, subjects } from "@hsmfleet/protocol";
import { managerFor } from "./manager-for.js";

/** Markers tried above the delivery count before the count is taken as it is. */
export const CLAIM_ATTEMPT_TRIES = 64;

const EMPTY = new Uint8Array(0);

/**
 * Claims the lowest attempt number ≥ `deliveryCount` that no run of `itemId` has claimed; after
 * CLAIM_ATTEMPT_TRIES taken ones, the last number tried (a run that never ends its search would
 * hold the item forever).
 */
export const claimAttempt = async (
  js: JetStreamClient,
  nc: NatsConnection,
  jobId: string,
  itemId: string,
  deliveryCount: number,
): Promise<number> => {
  const first = Math.max(1, deliveryCount);
  let n = first;
  for (; n < first + CLAIM_ATTEMPT_TRIES; n++) {
    const ack = await js.publish(subjects.park(jobId), EMPTY, { msgID: `${itemId}.run${n}` });
    if (!ack.duplicate) {
      try {
        const jsm = await managerFor(nc);
        await jsm.streams.deleteMessage(WORK_STREAM, ack.seq, false);
      } catch {
        // Left for the end-of-job purge of the job's WORK subjects; the claim stands.
      }
      return n;
    }
  }
  return n;
};
