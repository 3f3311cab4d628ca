export interface WorkerStats {
  itemsInFlight: number;
  itemsDone: number;
  itemsFailed: number;
  entriesRead: number;
  bytesMoved: number;
  /** Entries tried again after a retryable failure (item level; request retries are in blobRetryStats). */
  entryRetries: number;
}
