import { jetstreamManager } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { DiscardPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { CHANGES_ALL, CHANGES_STREAM } from "@hsmfleet/protocol";

/** How long applied change records stay in HSMFLEET_CHANGES when this side creates it. */
export const CHANGES_MAX_AGE_MS = 7 * 24 * 3_600_000;

/**
 * The change stream sync publishes to (issue 18): created here if it does not exist yet, with the
 * same settings (limits retention, file storage, subjects `hsmfleet.changes.>`), never updated.
 */
export const ensureChangesStream = async (nc: NatsConnection, replicas = 1): Promise<void> => {
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(CHANGES_STREAM);
    return;
  } catch {
    // not there yet
  }
  try {
    await jsm.streams.add({
      name: CHANGES_STREAM,
      subjects: [CHANGES_ALL],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      max_age: CHANGES_MAX_AGE_MS * 1_000_000,
      duplicate_window: 2 * 60_000 * 1_000_000,
    });
  } catch (err) {
    // Another process created it meanwhile: fine.
    await jsm.streams.info(CHANGES_STREAM).catch(() => {
      throw err;
    });
  }
};
