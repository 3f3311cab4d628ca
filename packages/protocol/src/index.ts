export {
  encodeWalkShard,
  decodeWalkShard,
  encodeTransferBatch,
  decodeTransferBatch,
  encodeItemResult,
  decodeItemResult,
  encodeErrorBatch,
  decodeErrorBatch,
  encodeJobSpec,
  decodeJobSpec,
  encodeJobStatus,
  decodeJobStatus,
  encodeWorkerHeartbeat,
  decodeWorkerHeartbeat,
  encodeChunk,
  decodeChunk,
  encodeJobProgress,
  decodeJobProgress,
  MAX_PROGRESS_ITEMS,
} from "./codecs.js";
export {
  encodeHsmActionList,
  decodeHsmActionList,
  encodeHsmActionResult,
  decodeHsmActionResult,
  encodeHsmProgress,
  decodeHsmProgress,
  encodeHsmCancel,
  decodeHsmCancel,
} from "./hsm-codecs.js";
export {
  emptyScanCounters,
  emptyExportCounters,
  emptyImportCounters,
  emptyAutoImportCounters,
  emptyAutoImportJobCounters,
  emptyRestoreCounters,
  emptyInFlightCounters,
  addCounters,
} from "./counters.js";
export type {
  HsmCounters,
  SyncJobCounters,
  AutoImportJobCounters,
  AutoImportCounters,
  ScanCounters,
  ExportCounters,
  ImportCounters,
  RestoreCounters,
  InFlightCounters,
  ItemProgress,
  JobProgress,
} from "./counters.js";
export { Uint64RangeError, toSafeNumber, toBigInt } from "./long.js";
export {
  JobKind,
  JobState,
  jobStateName,
  emptyHsmCounters,
  describeJobState,
  jobCompleted,
  withInFlight,
  defaultImportSpec,
  DEFAULT_CHUNK_SIZE_BYTES,
  newItemResult,
  newJobSpec,
  newJobStatus,
  noJobLimits,
  jobLimitsOf,
} from "./messages.js";
export { HsmAction, HsmItemStatus } from "./hsm-messages.js";
export type {
  WalkShard,
  TransferBatch,
  ItemError,
  ItemKind,
  ItemResult,
  ErrorBatch,
  ImportDir,
  ImportSpec,
  ImportMode,
  ConflictMode,
  JobSpec,
  JobLimits,
  JobStatus,
  WorkerHeartbeat,
  Chunk,
} from "./messages.js";
export type {
  HsmActionItem,
  HsmActionList,
  HsmActionResult,
  HsmItemResult,
  HsmProgress,
  HsmCancel,
} from "./hsm-messages.js";
export {
  WORK_STREAM,
  RESULTS_STREAM,
  JOBS_BUCKET,
  LEDGER_BUCKET,
  WALK_CONSUMER,
  TRANSFER_CONSUMER,
  CHUNK_CONSUMER,
  CHUNKS_BUCKET,
  LOCKS_BUCKET,
  HSM_STREAM,
  HSM_DEFAULT_PARTITIONS,
  hsmConsumerName,
  subjects,
  restoreConsumer,
  JOB_ID_PATTERN,
} from "./subjects.js";
export {
  sizeBucket,
  sizeBucketLabel,
  formatBytes,
  mergeScanCounters,
  shardIdFor,
  WALK_GROUP_DIRECTORIES,
  rootWalkShard,
} from "./scan-counters.js";
export { SEAL_HEADER, newItemKey, sealFor, sealMatches, jobIdOfSubject } from "./seal.js";
export {
  CHANGE_TYPES,
  CHANGES_STREAM,
  CHANGES_ALL,
  changesSubject,
  encodeChangeRecord,
  decodeChangeRecord,
} from "./change-record.js";
export type { ChangeType, ChangeRecord } from "./change-record.js";
export {
  SYNC_OP_KINDS,
  MAX_SYNC_OPS,
  emptySyncCounters,
  syncSubjects,
  encodeSyncBatch,
  decodeSyncBatch,
  encodeSyncResult,
  decodeSyncResult,
} from "./sync-item.js";
export type {
  SyncOp,
  SyncOpKind,
  SyncBatch,
  SyncCounters,
  SyncFailure,
  SyncResult,
} from "./sync-item.js";
export {
  candidateBefore,
  decodePolicyCandidates,
  encodePolicyCandidates,
  policyCandidatesSubject,
} from "./policy-candidates.js";
export type { PolicyCandidate, PolicyCandidateBatch } from "./policy-candidates.js";
export {
  BlobEventError,
  compareSequencers,
  parseBlobEvent,
  parseBlobEvents,
  parseBlobSubject,
  parseBlobUrl,
  encodeBlobChange,
  decodeBlobChange,
} from "./blob-change.js";
export type { BlobChange, BlobChangeKind } from "./blob-change.js";
export { peekJobStatus } from "./job-status-peek.js";
export type { JobStatusPeek } from "./job-status-peek.js";
export {
  autoImportSubjects,
  autoImportShardOf,
  MAX_AUTOIMPORT_CHANGES,
  encodeAutoImportBatch,
  decodeAutoImportBatch,
  encodeAutoImportResult,
  decodeAutoImportResult,
} from "./autoimport-item.js";
export type {
  AutoImportBatch,
  AutoImportChange,
  AutoImportOutcome,
  AutoImportResult,
} from "./autoimport-item.js";
export {
  encodeParkedChildren,
  decodeParkedChildren,
  parkedChildBytes,
  PARKED_ID_MAX_BYTES,
  PARKED_PARTS_MAX,
  PARKED_PLACEHOLDER,
} from "./parked-children.js";
export type { ParkedChild, ParkedChildKind, ParkedChildren } from "./parked-children.js";
export { attemptScope, walkResultId, walkFailureId, spawnNoticeId } from "./walk-ids.js";
