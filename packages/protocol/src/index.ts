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
  encodeHsmActionList,
  decodeHsmActionList,
  encodeChunk,
  decodeChunk,
} from "./codecs.js";
export { Uint64RangeError, toSafeNumber, toBigInt } from "./long.js";
export { JobKind, JobState, HsmAction, emptyScanCounters } from "./messages.js";
export type {
  WalkShard,
  TransferBatch,
  ItemError,
  ItemKind,
  ItemResult,
  ErrorBatch,
  ScanCounters,
  JobSpec,
  JobStatus,
  WorkerHeartbeat,
  HsmActionItem,
  HsmActionList,
  Chunk,
} from "./messages.js";
export {
  WORK_STREAM,
  RESULTS_STREAM,
  JOBS_BUCKET,
  WALK_CONSUMER,
  subjects,
  JOB_ID_PATTERN,
} from "./subjects.js";
export {
  sizeBucket,
  sizeBucketLabel,
  formatBytes,
  mergeScanCounters,
  shardIdFor,
} from "./scan-counters.js";
