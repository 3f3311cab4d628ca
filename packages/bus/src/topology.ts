import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import {
  JOBS_BUCKET,
  RESULTS_STREAM,
  WALK_CONSUMER,
  TRANSFER_CONSUMER,
  CHUNK_CONSUMER,
  CHUNKS_BUCKET,
  LOCKS_BUCKET,
  WORK_STREAM,
  subjects,
} from "@hsmfleet/protocol";

export interface TopologyOptions {
  /** JetStream replicas for streams and the job bucket (1 single server, 3 for an R3 cluster). Default 1. */
  replicas?: number | undefined;
  /**
   * How long JetStream remembers message ids to drop duplicates. A work item redelivered after this
   * window could publish its children again, so keep it well above ackWait × maxDeliver. Default 30 min.
   */
  duplicateWindowMs?: number | undefined;
  /** How long a worker holds an item before it is redelivered (workers extend it with working()). Default 30 s. */
  ackWaitMs?: number | undefined;
  /** Deliveries before an item is given up and recorded as an error. Default 5. */
  maxDeliver?: number | undefined;
  /** Unacknowledged items the whole fleet may hold on one consumer. Default 10,000. */
  maxAckPending?: number | undefined;
  /** Results are kept this long for status and resume. Default 7 days. */
  resultsMaxAgeMs?: number | undefined;
  /**
   * Apply these settings to streams and consumers that already exist. Default false: whoever
   * creates them first decides, so a worker started with defaults never undoes an admin's settings.
   */
  update?: boolean | undefined;
}

export const TOPOLOGY_DEFAULTS = {
  replicas: 1,
  duplicateWindowMs: 30 * 60_000,
  ackWaitMs: 30_000,
  maxDeliver: 5,
  maxAckPending: 10_000,
  resultsMaxAgeMs: 7 * 24 * 3_600_000,
  update: false,
} as const;

export type ResolvedTopology = { [K in keyof TopologyOptions]-?: NonNullable<TopologyOptions[K]> };

export const resolveTopology = (options: TopologyOptions = {}): ResolvedTopology => ({
  replicas: options.replicas ?? TOPOLOGY_DEFAULTS.replicas,
  duplicateWindowMs: options.duplicateWindowMs ?? TOPOLOGY_DEFAULTS.duplicateWindowMs,
  ackWaitMs: options.ackWaitMs ?? TOPOLOGY_DEFAULTS.ackWaitMs,
  maxDeliver: options.maxDeliver ?? TOPOLOGY_DEFAULTS.maxDeliver,
  maxAckPending: options.maxAckPending ?? TOPOLOGY_DEFAULTS.maxAckPending,
  resultsMaxAgeMs: options.resultsMaxAgeMs ?? TOPOLOGY_DEFAULTS.resultsMaxAgeMs,
  update: options.update ?? TOPOLOGY_DEFAULTS.update,
});

const ensureStream = async (
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
  update: boolean,
) => {
  try {
    await jsm.streams.info(config.name);
    if (update) await jsm.streams.update(config.name, config);
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) {
      await jsm.streams.add(config);
      return;
    }
    throw err;
  }
};

/**
 * Creates (or brings up to date) the streams, the shared walk consumer and the job bucket.
 * Idempotent: every coordinator and worker calls it at start.
 */
export const ensureTopology = async (
  nc: NatsConnection,
  options: TopologyOptions = {},
): Promise<{
  jsm: JetStreamManager;
  jobs: KV;
  locks: KV;
  chunks: KV;
  topology: ResolvedTopology;
}> => {
  const t = resolveTopology(options);
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(nc, { timeout: 10_000 });
  } catch (err) {
    throw new DependencyError(
      `NATS at ${nc.getServer()} has no JetStream (start nats-server with -js): ${errorMessage(err)}`,
      { cause: err },
    );
  }
  await ensureStream(
    jsm,
    {
      name: WORK_STREAM,
      subjects: [subjects.workAll],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: t.replicas,
      duplicate_window: nanos(t.duplicateWindowMs),
      discard: DiscardPolicy.Old,
    },
    t.update,
  );
  await ensureStream(
    jsm,
    {
      name: RESULTS_STREAM,
      subjects: [subjects.resultsAll],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: t.replicas,
      duplicate_window: nanos(t.duplicateWindowMs),
      max_age: nanos(t.resultsMaxAgeMs),
      discard: DiscardPolicy.Old,
    },
    t.update,
  );
  for (const [name, filter] of [
    [WALK_CONSUMER, subjects.walkAll],
    [TRANSFER_CONSUMER, subjects.transferAll],
    [CHUNK_CONSUMER, subjects.chunkAll],
  ] as const) {
    const consumerConfig = {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: filter,
      ack_wait: nanos(t.ackWaitMs),
      max_deliver: t.maxDeliver,
      max_ack_pending: t.maxAckPending,
    };
    try {
      await jsm.consumers.info(WORK_STREAM, name);
      if (t.update) await jsm.consumers.update(WORK_STREAM, name, consumerConfig);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) {
        await jsm.consumers.add(WORK_STREAM, consumerConfig);
      } else {
        throw err;
      }
    }
  }
  const kvm = new Kvm(nc);
  const jobs = await kvm.create(JOBS_BUCKET, { history: 1, replicas: t.replicas });
  const locks = await kvm.create(LOCKS_BUCKET, { history: 1, replicas: t.replicas });
  // Chunk records outlive no job: they expire with the results.
  const chunks = await kvm.create(CHUNKS_BUCKET, {
    history: 1,
    replicas: t.replicas,
    ttl: t.resultsMaxAgeMs,
  });
  return { jsm, jobs, locks, chunks, topology: t };
};
