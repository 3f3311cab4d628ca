import type { AutoImportCounters } from "./apply-blob-change.js";

/** What `hsmfleet status` shows of a running auto-import (AMLFS autoImportJobs fields). */
export interface AutoImportStatus extends AutoImportCounters {
  name: string;
  state: "InProgress" | "Disabling" | "Disabled" | "Failed";
  container: string;
  target: string;
  /** Messages completed, including duplicates and stale events. */
  messagesConsumed: number;
  duplicates: number;
  staleEvents: number;
  deadLettered: number;
  /** Event time of the newest event applied (AMLFS: lastChangeFeedEventConsumedTime). */
  lastChangeFeedEventConsumedTime: string;
  /** When the initial scan (a full import) last ended. */
  lastTimeFullySynchronized: string;
  /**
   * The backlog the service holds (a queue receiver cannot see the queue's depth): messages
   * received and not settled yet, rounds and work items out on the fleet, and how long the oldest
   * message in hand has been in Service Bus (ms; 0 when none is).
   */
  messagesInFlight: number;
  roundsInFlight: number;
  itemsInFlight: number;
  msBehind: number;
  updatedAt: string;
}
