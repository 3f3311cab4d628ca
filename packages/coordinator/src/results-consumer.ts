import { DeliverPolicy } from "@nats-io/jetstream";
import { withJetStreamRetry } from "@hsmfleet/bus";
import type { JetStreamClient } from "@hsmfleet/bus";
import { RESULTS_STREAM } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";

export interface ResultsConsumerOptions {
  jobId: string;
  /** The job's results subject (scan/export/… results, or HSM item results). */
  filterSubject: string;
  /** Stream sequence of the last result already folded in; 0 = from the first. */
  afterSeq: number;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
}

/**
 * Creates an ordered consumer on the results stream for one job, starting after `afterSeq`, so a
 * consumer re-opened after its node died (bus ResilientConsumer) neither skips nor repeats.
 * JetStream may leave the creation unanswered while a node of a cluster is down, so it is retried
 * (bus jetstream-retry.ts); each try is a new consumer.
 */
export const openResultsConsumer = (js: JetStreamClient, o: ResultsConsumerOptions) =>
  withJetStreamRetry(
    `create the results consumer of job ${o.jobId} on stream ${RESULTS_STREAM}`,
    () =>
      js.consumers.get(RESULTS_STREAM, {
        filter_subjects: o.filterSubject,
        ...(o.afterSeq > 0
          ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: o.afterSeq + 1 }
          : { deliver_policy: DeliverPolicy.All }),
      }),
    {
      signal: o.signal,
      onRetry: (attempt, err) =>
        o.logger?.warn(
          { jobId: o.jobId, attempt, err },
          "JetStream did not create the results consumer; retrying",
        ),
    },
  );
