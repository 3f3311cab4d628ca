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
  updatedAt: string;
}
