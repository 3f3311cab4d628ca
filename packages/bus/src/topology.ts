import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { ConsumerConfig, JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { DependencyError, errorMessage } from "@hsmfleet/core";
import { withJetStreamRetry } from "./jetstream-retry.js";
import {
  JOBS_BUCKET,
  LEDGER_BUCKET,
  RESULTS_STREAM,
  WALK_CONSUMER,
  TRANSFER_CONSUMER,
  CHUNK_CONSUMER,
  CHUNKS_BUCKET,
  LOCKS_BUCKET,
  WORK_STREAM,
  HSM_STREAM,
  HSM_DEFAULT_PARTITIONS,
  hsmConsumerName,
  subjects,
} from "@hsmfleet/protocol";

export interface TopologyOptions {
  /** How long to wait for a JetStream cluster's API to answer at all. Default 60 s. */
  reachDeadlineMs?: number | undefined;
  /** JetStream replicas for streams and the job bucket (1 single server, 3 for an R3 cluster). Default HSMFLEET_NATS_REPLICAS, else 1. */
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
  /**
   * HSM partitions (hsmfleet.hsm.<n>, one durable consumer each) to make sure exist. Default 16. More
   * can be added later (a coordinator's --partitions); workers pick new ones up.
   */
  hsmPartitions?: number | undefined;
}

export const TOPOLOGY_DEFAULTS = {
  replicas: 1,
  duplicateWindowMs: 30 * 60_000,
  ackWaitMs: 30_000,
  maxDeliver: 5,
  maxAckPending: 10_000,
  resultsMaxAgeMs: 7 * 24 * 3_600_000,
  update: false,
  hsmPartitions: HSM_DEFAULT_PARTITIONS,
} as const;

export type ResolvedTopology = {
  [K in Exclude<keyof TopologyOptions, "reachDeadlineMs">]-?: NonNullable<TopologyOptions[K]>;
};

/**
 * Replicas from HSMFLEET_NATS_REPLICAS (1 to 5), so every process of a fleet on a 3-node cluster
 * (workers, coordinator commands, services) creates R3 streams and buckets without each command
 * growing an option; undefined when unset.
 */
export const replicasFromEnv = (env: NodeJS.ProcessEnv = process.env): number | undefined => {
  const text = env["HSMFLEET_NATS_REPLICAS"];
  if (text === undefined || text === "") return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 5)
    throw new RangeError(
      `HSMFLEET_NATS_REPLICAS must be an integer from 1 to 5, got ${JSON.stringify(text)}`,
    );
  return n;
};

export const resolveTopology = (options: TopologyOptions = {}): ResolvedTopology => ({
  replicas: options.replicas ?? replicasFromEnv() ?? TOPOLOGY_DEFAULTS.replicas,
  duplicateWindowMs: options.duplicateWindowMs ?? TOPOLOGY_DEFAULTS.duplicateWindowMs,
  ackWaitMs: options.ackWaitMs ?? TOPOLOGY_DEFAULTS.ackWaitMs,
  maxDeliver: options.maxDeliver ?? TOPOLOGY_DEFAULTS.maxDeliver,
  maxAckPending: options.maxAckPending ?? TOPOLOGY_DEFAULTS.maxAckPending,
  resultsMaxAgeMs: options.resultsMaxAgeMs ?? TOPOLOGY_DEFAULTS.resultsMaxAgeMs,
  update: options.update ?? TOPOLOGY_DEFAULTS.update,
  hsmPartitions: options.hsmPartitions ?? TOPOLOGY_DEFAULTS.hsmPartitions,
});

export const ensureStream = (
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
  update: boolean,
) =>
  withJetStreamRetry(`create or check the stream ${config.name}`, async () => {
    try {
      await jsm.streams.info(config.name);
      if (update) await jsm.streams.update(config.name, config);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.status === 404) {
        try {
          await jsm.streams.add(config);
        } catch (addErr) {
          // Another process created it between our look and our add: it is there, as asked.
          if (!createdConcurrently(addErr)) throw addErr;
          await jsm.streams.info(config.name);
        }
        return;
      }
      throw err;
    }
  });

/**
 * What nats-server answers a create that raced another process's create of the same stream
 * (seen as "subjects overlap with an existing stream" from the chunk tracker's test, where three
 * connections ran ensureTopology at once).
 */
const createdConcurrently = (err: unknown): boolean =>
  err instanceof JetStreamApiError &&
  /subjects overlap with an existing stream|stream name already in use/i.test(err.message);

/** Creates a durable consumer, or updates it when asked to (safe to repeat after a timeout). */
const ensureConsumer = (
  jsm: JetStreamManager,
  stream: string,
  config: Partial<ConsumerConfig> & { durable_name: string },
  update: boolean,
) =>
  withJetStreamRetry(
    `create or check the consumer ${config.durable_name} on ${stream}`,
    async () => {
      try {
        await jsm.consumers.info(stream, config.durable_name);
        if (update) await jsm.consumers.update(stream, config.durable_name, config);
      } catch (err) {
        if (err instanceof JetStreamApiError && err.status === 404) {
          await jsm.consumers.add(stream, config);
        } else {
          throw err;
        }
      }
    },
  );

/** How long ensureTopology waits for a JetStream cluster's API to answer at all (default). */
export const REACH_JETSTREAM_DEADLINE_MS = 60_000;

/**
 * The JetStream manager of `nc`. A server without JetStream answers at once (no responders): that
 * is an error naming the fix. A cluster that is electing its meta leader (a node just killed or
 * rejoining) answers nothing for a while: the look-up times out and is tried again until
 * `deadlineMs`, as withJetStreamRetry does for every other JetStream call.
 */
export const reachJetStream = async (
  nc: NatsConnection,
  deadlineMs: number,
  attemptTimeoutMs = 10_000,
): Promise<JetStreamManager> => {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await jetstreamManager(nc, { timeout: attemptTimeoutMs });
    } catch (err) {
      const timedOut = err instanceof Error && err.name === "TimeoutError";
      if (!timedOut) {
        throw new DependencyError(
          `NATS at ${nc.getServer()} has no JetStream (start nats-server with -js): ${errorMessage(err)}`,
          { cause: err },
        );
      }
      if (Date.now() - started >= deadlineMs) {
        throw new DependencyError(
          `NATS at ${nc.getServer()}: the JetStream API did not answer in ${attempt} tries over ` +
            `${Math.round((Date.now() - started) / 1000)} s (${errorMessage(err)}); is a quorum of the ` +
            `JetStream cluster up and connected (nats server report jetstream)?`,
          { cause: err },
        );
      }
    }
  }
};

/** What ensureTopology made sure of, and the handles to it. */
export interface EnsuredTopology {
  jsm: JetStreamManager;
  jobs: KV;
  locks: KV;
  chunks: KV;
  ledger: KV;
  topology: ResolvedTopology;
}

/**
 * How long an ensureTopology that succeeded answers later calls on the same connection with the
 * same settings without asking the server again. One command calls it several times within
 * milliseconds (each in-process worker, the job, the dashboard): ~30 look-ups each, on the path
 * before the first file is read (issue 17). Short, so a long-running process (a service
 * starting jobs) still re-creates a stream an admin deleted.
 */
export const TOPOLOGY_REUSE_MS = 5000;

/** One ensureTopology call: in flight, or done (and when it succeeded). */
interface EnsureCall {
  result: Promise<EnsuredTopology>;
  doneAtMs?: number;
}

/** Per connection, by settings. */
const ensured = new WeakMap<NatsConnection, Map<string, EnsureCall>>();

/**
 * Creates (or brings up to date) the streams, the shared walk consumer and the job bucket.
 * Idempotent: every coordinator and worker calls it at start. Calls on one connection with the
 * same settings while one is in flight, or within TOPOLOGY_REUSE_MS after one succeeded, share
 * its result (a failed one is not kept).
 */
export const ensureTopology = (
  nc: NatsConnection,
  options: TopologyOptions = {},
): Promise<EnsuredTopology> => {
  const key = JSON.stringify(resolveTopology(options));
  let byKey = ensured.get(nc);
  if (byKey === undefined) ensured.set(nc, (byKey = new Map<string, EnsureCall>()));
  const known = byKey.get(key);
  if (
    known !== undefined &&
    (known.doneAtMs === undefined || Date.now() - known.doneAtMs < TOPOLOGY_REUSE_MS)
  )
    return known.result;
  const entry: EnsureCall = {
    result: ensureTopologyNow(nc, options),
  };
  byKey.set(key, entry);
  entry.result.then(
    () => (entry.doneAtMs = Date.now()),
    () => {
      if (byKey.get(key) === entry) byKey.delete(key);
    },
  );
  return entry.result;
};

const ensureTopologyNow = async (
  nc: NatsConnection,
  options: TopologyOptions,
): Promise<EnsuredTopology> => {
  const t = resolveTopology(options);
  const jsm = await reachJetStream(nc, options.reachDeadlineMs ?? REACH_JETSTREAM_DEADLINE_MS);
  // Independent look-ups and creations go out together (one command paid ~30 sequential round
  // trips here, three times: its workers and its job each ensure the topology): the streams,
  // then every consumer and bucket at once. A create that races another process's is handled
  // by ensureStream/ensureConsumer/bucket, as between processes.
  const streams = ensureStream(
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
  const results = ensureStream(
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
  const hsm = ensureStream(
    jsm,
    {
      name: HSM_STREAM,
      subjects: [subjects.hsmAll],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      num_replicas: t.replicas,
      duplicate_window: nanos(t.duplicateWindowMs),
      discard: DiscardPolicy.Old,
    },
    t.update,
  );
  const workConsumers = streams.then(() =>
    Promise.all(
      (
        [
          [WALK_CONSUMER, subjects.walkAll],
          [TRANSFER_CONSUMER, subjects.transferAll],
          [CHUNK_CONSUMER, subjects.chunkAll],
        ] as const
      ).map(([name, filter]) =>
        ensureConsumer(
          jsm,
          WORK_STREAM,
          {
            durable_name: name,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            filter_subject: filter,
            ack_wait: nanos(t.ackWaitMs),
            max_deliver: t.maxDeliver,
            max_ack_pending: t.maxAckPending,
          },
          t.update,
        ),
      ),
    ),
  );
  const hsmConsumers = hsm.then(() => ensureHsmPartitions(jsm, t.hsmPartitions, t));
  const kvm = new Kvm(nc);
  const bucket = (name: string, ttl?: number) =>
    withJetStreamRetry(`create or open the KV bucket ${name}`, async () => {
      const opts = { history: 1, replicas: t.replicas, ...(ttl === undefined ? {} : { ttl }) };
      try {
        return await kvm.create(name, opts);
      } catch (err) {
        // Another process created the bucket at the same moment: open what it made.
        if (!createdConcurrently(err)) throw err;
        return await kvm.create(name, opts);
      }
    });
  // Every promise is awaited together, so none is left to reject unobserved.
  const [, , , , jobs, locks, chunks, ledger] = await Promise.all([
    results,
    workConsumers,
    hsmConsumers,
    streams,
    bucket(JOBS_BUCKET),
    bucket(LOCKS_BUCKET),
    // Chunk records outlive no job: they expire with the results.
    bucket(CHUNKS_BUCKET, t.resultsMaxAgeMs),
    // Pages of the running jobs' outstanding ids (coordinator ledger-store.ts), deleted at job end.
    bucket(LEDGER_BUCKET),
  ]);
  return { jsm, jobs, locks, chunks, ledger, topology: t };
};

/** The ledger bucket ensureTopology made (an error naming it when it does not exist). */
export const openLedgerBucket = async (nc: NatsConnection): Promise<KV> => {
  try {
    return await withJetStreamRetry(`open the KV bucket ${LEDGER_BUCKET}`, () =>
      new Kvm(nc).open(LEDGER_BUCKET),
    );
  } catch (err) {
    throw new DependencyError(
      `could not open the KV bucket ${LEDGER_BUCKET} (a coordinator or worker of this version creates it at start): ${errorMessage(err)}`,
      { cause: err },
    );
  }
};

/**
 * One durable pull consumer per HSM partition, with max_ack_pending 1: a partition's action lists
 * are carried out one after another, by whichever worker holds it, so actions on one FID stay in
 * order (a redelivered list comes back before the next one). Parallelism comes from partitions
 * and from the items inside a list.
 */
export const ensureHsmPartitions = async (
  jsm: JetStreamManager,
  partitions: number,
  t: Pick<ResolvedTopology, "ackWaitMs" | "maxDeliver" | "update">,
): Promise<void> => {
  await Promise.all(
    Array.from({ length: partitions }, (_, p) =>
      ensureConsumer(
        jsm,
        HSM_STREAM,
        {
          durable_name: hsmConsumerName(p),
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: subjects.hsmPartition(p),
          ack_wait: nanos(t.ackWaitMs),
          max_deliver: t.maxDeliver,
          max_ack_pending: 1,
        },
        t.update,
      ),
    ),
  );
};

/** Partition numbers that have a consumer (hsm-<n>), ascending. */
export const listHsmPartitions = async (jsm: JetStreamManager): Promise<number[]> => {
  const out: number[] = [];
  for await (const info of jsm.consumers.list(HSM_STREAM)) {
    const m = /^hsm-(\d+)$/.exec(info.name);
    if (m) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
};
