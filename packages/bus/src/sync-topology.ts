import { DiscardPolicy, RetentionPolicy, StorageType, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { KV } from "@nats-io/kv";
import { nanos } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { CHANGES_ALL, CHANGES_STREAM } from "@hsmfleet/protocol";
import { withJetStreamRetry } from "./jetstream-retry.js";
import { ensureStream } from "./topology.js";

/** KV bucket of the sync services: checkpoints, delayed deletions and status. */
export const SYNC_BUCKET = "hsmfleet-sync";

export const SYNC_TOPOLOGY_DEFAULTS = {
  /** Applied change records are kept this long in HSMFLEET_CHANGES (7 days). */
  changesMaxAgeMs: 7 * 24 * 3600 * 1000,
  /** …and at most this many bytes (1 GiB; the oldest go first). */
  changesMaxBytes: 1024 * 1024 * 1024,
  replicas: 1,
} as const;

export interface SyncTopologyOptions {
  changesMaxAgeMs?: number | undefined;
  changesMaxBytes?: number | undefined;
  replicas?: number | undefined;
}

/**
 * What `hsmfleet sync` adds to the topology: the HSMFLEET_CHANGES stream (limits retention,
 * bounded age and size: applied change records for other services, e.g. the policy engine) and
 * the hsmfleet-sync KV bucket. Created by whoever comes first; never updated implicitly.
 */
export const ensureSyncTopology = async (
  nc: NatsConnection,
  options: SyncTopologyOptions = {},
): Promise<{ state: KV }> => {
  const replicas = options.replicas ?? SYNC_TOPOLOGY_DEFAULTS.replicas;
  await ensureStream(
    await jetstreamManager(nc),
    {
      name: CHANGES_STREAM,
      subjects: [CHANGES_ALL],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: replicas,
      max_age: nanos(options.changesMaxAgeMs ?? SYNC_TOPOLOGY_DEFAULTS.changesMaxAgeMs),
      max_bytes: options.changesMaxBytes ?? SYNC_TOPOLOGY_DEFAULTS.changesMaxBytes,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(2 * 60 * 1000),
    },
    false,
  );
  const state = await withJetStreamRetry(`create or open the KV bucket ${SYNC_BUCKET}`, () =>
    new Kvm(nc).create(SYNC_BUCKET, { history: 1, replicas }),
  );
  return { state };
};
