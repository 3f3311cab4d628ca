// Counters of a job's work (scan, export, import, restore) and of the items still in flight:
// flat numeric records a job record, an item result and a progress message carry.

export interface ScanCounters {
  files: number;
  directories: number;
  symlinks: number;
  other: number;
  bytes: number;
  vanished: number;
  errors: number;
  /** Bucket 0: empty files; bucket i ≥ 1: sizes in [2^(i-1), 2^i). */
  sizeHistogram: number[];
  hsmStates: Record<string, number>;
}

export interface ExportCounters {
  filesFound: number;
  bytesFound: number;
  filesQueued: number;
  bytesQueued: number;
  filesExported: number;
  directoriesExported: number;
  symlinksExported: number;
  bytesExported: number;
  skipped: number;
  unsupported: number;
  errors: number;
  /** Released HSM files: verify compares their attributes only (their data is in the archive). */
  released: number;
}

/** Counters an import accumulates, named like AMLFS's importJobs status. */
export interface ImportCounters {
  totalBlobsWalked: number;
  totalBlobsImported: number;
  importedFiles: number;
  importedDirectories: number;
  importedSymlinks: number;
  preexistingFiles: number;
  preexistingDirectories: number;
  preexistingSymlinks: number;
  totalErrors: number;
  totalConflicts: number;
  bytesImported: number;
  filesQueued: number;
  bytesQueued: number;
  bytesDownloaded: number;
}

export interface RestoreCounters {
  filesFound: number;
  bytesFound: number;
  filesRestored: number;
  bytesRestored: number;
  notReleased: number;
  errors: number;
}

/**
 * What items still in flight have done so far (their results will count it, and more): files and
 * entries finished, bytes moved including the part of files not finished yet.
 */
export interface InFlightCounters {
  items: number;
  export: ExportCounters;
  import: ImportCounters;
  restore: RestoreCounters;
}

/** One item a worker runs and what it has done of it so far. */
export interface ItemProgress {
  itemId: string;
  attempt: number;
  done: InFlightCounters;
}

/** A worker's items in flight for one job (core NATS, hsmfleet.progress.<job>). */
export interface JobProgress {
  jobId: string;
  workerId: string;
  items: ItemProgress[];
}

export const emptyScanCounters = (): ScanCounters => ({
  files: 0,
  directories: 0,
  symlinks: 0,
  other: 0,
  bytes: 0,
  vanished: 0,
  errors: 0,
  sizeHistogram: [],
  hsmStates: {},
});

export const emptyExportCounters = (): ExportCounters => ({
  filesFound: 0,
  bytesFound: 0,
  filesQueued: 0,
  bytesQueued: 0,
  filesExported: 0,
  directoriesExported: 0,
  symlinksExported: 0,
  bytesExported: 0,
  skipped: 0,
  unsupported: 0,
  errors: 0,
  released: 0,
});

export const emptyImportCounters = (): ImportCounters => ({
  totalBlobsWalked: 0,
  totalBlobsImported: 0,
  importedFiles: 0,
  importedDirectories: 0,
  importedSymlinks: 0,
  preexistingFiles: 0,
  preexistingDirectories: 0,
  preexistingSymlinks: 0,
  totalErrors: 0,
  totalConflicts: 0,
  bytesImported: 0,
  filesQueued: 0,
  bytesQueued: 0,
  bytesDownloaded: 0,
});

export const emptyRestoreCounters = (): RestoreCounters => ({
  filesFound: 0,
  bytesFound: 0,
  filesRestored: 0,
  bytesRestored: 0,
  notReleased: 0,
  errors: 0,
});

export const emptyInFlightCounters = (): InFlightCounters => ({
  items: 0,
  export: emptyExportCounters(),
  import: emptyImportCounters(),
  restore: emptyRestoreCounters(),
});

/** Adds every counter of `from` to `into` (flat numeric records of the same shape). */
export const addCounters = <T extends object>(into: T, from: T): void => {
  const a = into as Record<string, number>;
  const b = from as Record<string, number>;
  for (const key of Object.keys(a)) a[key] = (a[key] ?? 0) + (b[key] ?? 0);
};

/** An HSM job's items by outcome, in its job record (`hsmfleet hsm …`). */
export interface HsmCounters {
  /** archive, release, restore, remove or cancel. */
  request: string;
  /** Items dispatched (one per file) and the action lists they went out in. */
  items: number;
  lists: number;
  done: number;
  /** Already in the requested state. */
  skipped: number;
  failed: number;
  cancelled: number;
  /** Bytes the workers moved (archive uploads, restore downloads). */
  bytes: number;
}

/** A sync service's progress in its job record (AMLFS autoExportJobs-like). */
export interface SyncJobCounters {
  source: string;
  syncState: string;
  recordsRead: number;
  recordsApplied: number;
  filesExported: number;
  bytesExported: number;
  directoriesExported: number;
  symlinksExported: number;
  metadataUpdates: number;
  renames: number;
  deletions: number;
  deletionsPending: number;
  failures: number;
  backlog: number;
  msBehind: number;
  lastFullySynchronizedMs: number;
}

/** What an import counts that an auto-import does not (it moves no data, queues nothing). */
const IMPORT_ONLY = ["bytesImported", "filesQueued", "bytesQueued", "bytesDownloaded"] as const;

/** Counters of applied blob events (AMLFS autoImportJobs names: importJobs' plus deletions). */
export type AutoImportCounters = Omit<ImportCounters, (typeof IMPORT_ONLY)[number]> & {
  deletions: number;
  /** Deletions not made: deletions disabled, or the file is dirty. */
  deletionsSkipped: number;
  /** Events for blobs that no longer exist. */
  vanished: number;
};

export const emptyAutoImportCounters = (): AutoImportCounters => {
  const c: Partial<ImportCounters> = emptyImportCounters();
  for (const k of IMPORT_ONLY) delete c[k];
  return {
    ...(c as Omit<ImportCounters, (typeof IMPORT_ONLY)[number]>),
    deletions: 0,
    deletionsSkipped: 0,
    vanished: 0,
  };
};

/** An auto-import service's progress in its job record (AMLFS autoImportJobs field names). */
export interface AutoImportJobCounters extends AutoImportCounters {
  /** InProgress, Disabling, Disabled, Failed. */
  autoimportState: string;
  /** Service Bus messages completed (duplicates and stale events included), and dead-lettered. */
  messagesConsumed: number;
  duplicates: number;
  staleEvents: number;
  deadLettered: number;
  /** Event time of the newest event applied (ms since the epoch; 0: none yet). */
  lastEventConsumedMs: number;
  /** When the last initial scan ended (ms since the epoch; 0: none). */
  lastFullySynchronizedMs: number;
  /** Messages received and not settled yet (the backlog the service holds). */
  messagesInFlight: number;
  /** Rounds (receives) and work items out on the fleet. */
  roundsInFlight: number;
  itemsInFlight: number;
  /** Now minus the enqueued time of the oldest message in hand (0 when none is). */
  msBehind: number;
}

export const emptyAutoImportJobCounters = (): AutoImportJobCounters => ({
  ...emptyAutoImportCounters(),
  autoimportState: "",
  messagesConsumed: 0,
  duplicates: 0,
  staleEvents: 0,
  deadLettered: 0,
  lastEventConsumedMs: 0,
  lastFullySynchronizedMs: 0,
  messagesInFlight: 0,
  roundsInFlight: 0,
  itemsInFlight: 0,
  msBehind: 0,
});
