// The HSM counters of a job record on the wire (job.proto HsmCounters).
import type { hsmfleet } from "./gen/hsmfleet.js";
import { fromNumber, toSafeNumber } from "./long.js";
import type { HsmCounters, SyncJobCounters } from "./counters.js";

const HSM_KEYS = ["items", "lists", "done", "skipped", "failed", "cancelled", "bytes"] as const;

export const hsmCountersToWire = (c: HsmCounters): hsmfleet.v1.IHsmCounters => ({
  request: c.request,
  ...Object.fromEntries(HSM_KEYS.map((k) => [k, fromNumber(c[k], k)])),
});

export const hsmCountersFromWire = (c: hsmfleet.v1.IHsmCounters): HsmCounters => ({
  request: c.request ?? "",
  ...(Object.fromEntries(HSM_KEYS.map((k) => [k, toSafeNumber(c[k], k)])) as Omit<
    HsmCounters,
    "request"
  >),
});

const SYNC_KEYS = [
  "recordsRead",
  "recordsApplied",
  "filesExported",
  "bytesExported",
  "directoriesExported",
  "symlinksExported",
  "metadataUpdates",
  "renames",
  "deletions",
  "deletionsPending",
  "failures",
  "backlog",
  "msBehind",
  "lastFullySynchronizedMs",
] as const;

/** A sync service's counters on the wire (job.proto SyncJobCounters). */
export const syncCountersToWire = (c: SyncJobCounters): hsmfleet.v1.ISyncJobCounters => ({
  source: c.source,
  syncState: c.syncState,
  ...Object.fromEntries(SYNC_KEYS.map((k) => [k, fromNumber(c[k], k)])),
});

export const syncCountersFromWire = (c: hsmfleet.v1.ISyncJobCounters): SyncJobCounters => ({
  source: c.source ?? "",
  syncState: c.syncState ?? "",
  ...(Object.fromEntries(SYNC_KEYS.map((k) => [k, toSafeNumber(c[k], k)])) as Omit<
    SyncJobCounters,
    "source" | "syncState"
  >),
});
