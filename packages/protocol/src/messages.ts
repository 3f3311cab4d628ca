import { newItemKey } from "./seal.js";
import {
  addCounters,
  emptyExportCounters,
  emptyImportCounters,
  emptyInFlightCounters,
  emptyRestoreCounters,
  emptyScanCounters,
} from "./counters.js";
import type {
  ExportCounters,
  HsmCounters,
  ImportCounters,
  InFlightCounters,
  RestoreCounters,
  ScanCounters,
  SyncJobCounters,
  AutoImportJobCounters,
} from "./counters.js";
import type { FileEntry } from "@hsmfleet/core";
import { formatNumber } from "@hsmfleet/core";

/** Sibling directories to read (at most WALK_GROUP_DIRECTORIES); see proto/hsmfleet/v1/walk.proto. */
export interface WalkShard {
  jobId: string;
  /** Root-relative raw path bytes; one empty path for the root. */
  paths: Buffer[];
  depth: number;
  shardId: string;
  /** Import only: what the parent knows of each directory (same order as paths; may be empty). */
  importDirs?: ImportDir[];
}

/** Attributes of a directory created by an import, set once its own entries exist. */
export interface ImportDir {
  hasAttrs: boolean;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  preexisting: boolean;
}

/** Entries a worker sends back (scan --list), or hands on as one transfer work item. */
export interface TransferBatch {
  jobId: string;
  batchId: string;
  shardId: string;
  sequence: number;
  entries: FileEntry[];
  /** Import/restore: the blob each entry comes from (same order as entries). */
  blobNames?: string[];
}

export interface ItemError {
  path: Buffer;
  operation: string;
  code: string;
  message: string;
  retryable: boolean;
}

/** "spawn" is not an item: it announces `children` work items before they are published. */
export type ItemKind = "walk" | "transfer" | "chunk" | "hsm" | "spawn";

export interface ItemResult {
  jobId: string;
  itemId: string;
  kind: ItemKind;
  children: number;
  scan: ScanCounters;
  errors: ItemError[];
  workerId: string;
  attempt: number;
  failed: boolean;
  export: ExportCounters;
  import: ImportCounters;
  restore: RestoreCounters;
  /** Ids of the work items counted in `children`, in publish order. */
  childIds: string[];
  /** Spawn notices only: the item announcing the children (it stays outstanding). */
  parentId: string;
}

export interface ErrorBatch {
  jobId: string;
  itemId: string;
  sequence: number;
  errors: ItemError[];
}

export const JobKind = {
  Scan: 1,
  Export: 2,
  Import: 3,
  Restore: 4,
  Hsm: 5,
  Verify: 6,
  /** `hsmfleet sync`: a long-running service keeping a container in step with a tree. */
  Sync: 7,
  /** A policy run's evaluation walk (docs/policies.md). */
  Policy: 8,
  /** `hsmfleet autoimport`: a long-running service applying Blob Storage events to a tree. */
  AutoImport: 9,
} as const;
export type JobKind = (typeof JobKind)[keyof typeof JobKind];

export const JobState = {
  Pending: 1,
  Running: 2,
  Succeeded: 3,
  Failed: 4,
  Cancelling: 5,
  Cancelled: 6,
  /** Every item was carried out, some with errors (AMLFS's CompletedPartial). */
  CompletedWithErrors: 7,
} as const;
export type JobState = (typeof JobState)[keyof typeof JobState];

const JOB_STATE_NAMES: Record<number, string> = {
  [JobState.Pending]: "pending",
  [JobState.Running]: "running",
  [JobState.Succeeded]: "succeeded",
  [JobState.Failed]: "failed",
  [JobState.Cancelling]: "cancelling",
  [JobState.Cancelled]: "cancelled",
  [JobState.CompletedWithErrors]: "completed-with-errors",
};

/** The word users see for a job state: "running", "succeeded", … */
export const jobStateName = (state: JobState): string => JOB_STATE_NAMES[state] ?? "unknown";

/**
 * A job state as a summary line says it: the state's word, except "completed with 2 errors" for
 * a job that carried out every item with some errors (`state` as jobStateName gives it).
 */
export const describeJobState = (state: string, errors: number): string =>
  state === JOB_STATE_NAMES[JobState.CompletedWithErrors]
    ? `completed with ${formatNumber(errors)} error${errors === 1 ? "" : "s"}`
    : state;

/** Whether a job in this state has ended after carrying out all of its work (with or without errors). */
export const jobCompleted = (state: JobState): boolean =>
  state === JobState.Succeeded || state === JobState.CompletedWithErrors;

export interface JobSpec {
  jobId: string;
  kind: JobKind;
  /** Absolute root path bytes on the namespace side. */
  root: Buffer;
  listEntries: boolean;
  batchMaxEntries: number;
  backend: string;
  hsmXattr: string;
  createdAtMs: number;
  createdBy: string;
  maxErrors: number;
  container: string;
  prefix: string;
  blockSize: number;
  logContainer: string;
  batchMaxBytes: number;
  /** Verify: compare the data too (MD5 vs the blob's Content-MD5, or a download). */
  verifyContent: boolean;
  /** Policy jobs: the PolicyEvaluation as JSON (empty for other kinds). */
  policy?: string | undefined;
  /**
   * Export and import --mode full: files larger than this move in chunks any worker takes
   * (0 = DEFAULT_CHUNK_SIZE_BYTES).
   */
  chunkSize: number;
  import: ImportSpec;
  /** Fleet-wide caps of the job (0 = none); each live worker takes its share. */
  limits: JobLimits;
  /**
   * Random per-job key sealing every work item and result of the job (see seal.ts); empty only in
   * records of coordinators that predate it, whose items workers refuse.
   */
  itemKey: Buffer;
}

export interface JobLimits {
  maxBandwidthBytesPerSec: number;
  maxRequestsPerSec: number;
}

export const noJobLimits = (): JobLimits => ({ maxBandwidthBytesPerSec: 0, maxRequestsPerSec: 0 });

/** Limits from options (missing = none); a negative or fractional value is a RangeError. */
export const jobLimitsOf = (given: Partial<JobLimits> | undefined): JobLimits => {
  const limits = {
    maxBandwidthBytesPerSec: given?.maxBandwidthBytesPerSec ?? 0,
    maxRequestsPerSec: given?.maxRequestsPerSec ?? 0,
  };
  for (const [name, v] of Object.entries(limits)) {
    if (!Number.isSafeInteger(v) || v < 0 || (name === "maxRequestsPerSec" && v > 0xffffffff))
      throw new RangeError(`job limit ${name} must be a whole number ≥ 0, got ${v}`);
  }
  return limits;
};

export type ImportMode = "namespace" | "full";
export type ConflictMode = "fail" | "skip" | "overwrite-dirty" | "overwrite-always";

export interface ImportSpec {
  mode: ImportMode;
  conflict: ConflictMode;
  archiveId: number;
  /** Blob-name prefixes to import, normalized ("" = the whole container). */
  prefixes: string[];
  maxInflight: number;
  restoreBatch: number;
  /** Restore fallback: the directory that maps to the container root (empty = none). */
  fsRoot: Buffer;
}

export interface JobStatus {
  spec: JobSpec;
  state: JobState;
  scan: ScanCounters;
  published: number;
  completed: number;
  startedAtMs: number;
  updatedAtMs: number;
  finishedAtMs: number;
  reason: string;
  resultsSeq: number;
  coordinator: string;
  listFile: string;
  listBytes: number;
  errorLog: string;
  errorLogBytes: number;
  errorSamples: ItemError[];
  export: ExportCounters;
  import: ImportCounters;
  restore: RestoreCounters;
  conflictLog: string;
  conflictLogBytes: number;
  /** Ids published and not yet reported (see coordinator result-ledger.ts). */
  outstanding: string[];
  /** HSM jobs only: what their action lists did so far. */
  hsm?: HsmCounters | undefined;
  /** Sync services only: what the service has read and applied so far. */
  sync?: SyncJobCounters | undefined;
  /** Auto-import services only: what the service has consumed and applied so far. */
  autoimport?: AutoImportJobCounters | undefined;
  /** Work of items in flight, shown on top of the counters while the job runs (not resumed from). */
  inFlight: InFlightCounters;
}

export interface WorkerHeartbeat {
  workerId: string;
  vmName: string;
  pid: number;
  version: string;
  startedAtMs: number;
  sentAtMs: number;
  itemsInFlight: number;
  itemsDone: number;
  entriesRead: number;
  bytesMoved: number;
  concurrency: number;
  rssBytes: number;
  /** Storage requests allowed in flight now (0 from workers that predate it). */
  requestConcurrency: number;
  maxRequestConcurrency: number;
}

export interface Chunk {
  jobId: string;
  chunkId: string;
  path: Buffer;
  offset: number;
  length: number;
  firstBlock: number;
  blockCount: number;
  blockSize: number;
  fileSize: number;
  fileMtimeSec: number;
  fileMtimeNsec: number;
  index: number;
  count: number;
  blobName: string;
  etag: string;
  contentMd5: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

/**
 * A job record as people should see it while it runs: its counters plus the work of the items in
 * flight (a copy; the record's own counters stay the exact resume point).
 */
export const withInFlight = (s: JobStatus): JobStatus => {
  if (s.inFlight.items === 0) return s;
  const export_ = { ...s.export };
  const import_ = { ...s.import };
  const restore = { ...s.restore };
  addCounters(export_, s.inFlight.export);
  addCounters(import_, s.inFlight.import);
  addCounters(restore, s.inFlight.restore);
  return { ...s, export: export_, import: import_, restore };
};

export const defaultImportSpec = (): ImportSpec => ({
  mode: "namespace",
  conflict: "fail",
  archiveId: 1,
  prefixes: [""],
  maxInflight: 2000,
  restoreBatch: 50,
  fsRoot: Buffer.alloc(0),
});

/** Chunk size of large files when the job gives none (JobSpec.chunkSize 0). */
export const DEFAULT_CHUNK_SIZE_BYTES = 256 * 1024 * 1024;

/** An item result with every counter at zero and no errors; `jobId`, `itemId`, `kind` required. */
export const newItemResult = (
  fields: Pick<ItemResult, "jobId" | "itemId" | "kind"> & Partial<ItemResult>,
): ItemResult => ({
  children: 0,
  scan: emptyScanCounters(),
  errors: [],
  workerId: "",
  attempt: 0,
  failed: false,
  export: emptyExportCounters(),
  import: emptyImportCounters(),
  restore: emptyRestoreCounters(),
  childIds: [],
  parentId: "",
  ...fields,
});

/** A job spec with every optional field at its default; `jobId`, `kind` and `root` are required. */
export const newJobSpec = (
  fields: Pick<JobSpec, "jobId" | "kind" | "root"> & Partial<JobSpec>,
): JobSpec => ({
  listEntries: false,
  batchMaxEntries: 1000,
  backend: "posix",
  hsmXattr: "trusted.hsm",
  createdAtMs: Date.now(),
  createdBy: "",
  maxErrors: -1,
  container: "",
  prefix: "",
  blockSize: 0,
  logContainer: "",
  batchMaxBytes: 0,
  chunkSize: 0,
  import: defaultImportSpec(),
  verifyContent: false,
  limits: noJobLimits(),
  itemKey: newItemKey(),
  ...fields,
});

export const emptyHsmCounters = (request = ""): HsmCounters => ({
  request,
  items: 0,
  lists: 0,
  done: 0,
  skipped: 0,
  failed: 0,
  cancelled: 0,
  bytes: 0,
});

/** A fresh running job record for `spec`: nothing published, nothing completed. */
export const newJobStatus = (spec: JobSpec, fields: Partial<JobStatus> = {}): JobStatus => ({
  spec,
  state: JobState.Running,
  scan: emptyScanCounters(),
  published: 0,
  completed: 0,
  startedAtMs: spec.createdAtMs,
  updatedAtMs: spec.createdAtMs,
  finishedAtMs: 0,
  reason: "",
  resultsSeq: 0,
  coordinator: "",
  listFile: "",
  listBytes: 0,
  errorLog: "",
  errorLogBytes: 0,
  errorSamples: [],
  export: emptyExportCounters(),
  import: emptyImportCounters(),
  restore: emptyRestoreCounters(),
  conflictLog: "",
  conflictLogBytes: 0,
  outstanding: [],
  inFlight: emptyInFlightCounters(),
  ...fields,
});
