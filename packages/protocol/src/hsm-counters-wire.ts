// The HSM counters of a job record on the wire (job.proto HsmCounters).
import type { hsmfleet } from "./gen/hsmfleet.js";
import { fromNumber, toSafeNumber } from "./long.js";
import { emptyAutoImportJobCounters } from "./counters.js";
import type { AutoImportJobCounters, HsmCounters, SyncJobCounters } from "./counters.js";

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

/** The numeric fields, as the empty record has them. */
const AUTOIMPORT_KEYS = Object.keys(emptyAutoImportJobCounters()).filter(
  (k) => k !== "autoimportState",
) as (keyof Omit<AutoImportJobCounters, "autoimportState">)[];

/** An auto-import service's counters on the wire (job.proto AutoImportJobCounters). */
export const autoImportCountersToWire = (
  c: AutoImportJobCounters,
): hsmfleet.v1.IAutoImportJobCounters => ({
  autoimportState: c.autoimportState,
  ...Object.fromEntries(AUTOIMPORT_KEYS.map((k) => [k, fromNumber(c[k], k)])),
});

export const autoImportCountersFromWire = (
  c: hsmfleet.v1.IAutoImportJobCounters,
): AutoImportJobCounters => ({
  autoimportState: c.autoimportState ?? "",
  ...(Object.fromEntries(AUTOIMPORT_KEYS.map((k) => [k, toSafeNumber(c[k], k)])) as Omit<
    AutoImportJobCounters,
    "autoimportState"
  >),
});
