export {
  parseStorageTarget,
  parseConnectionString,
  describeStorageTarget,
  redactSecrets,
} from "./storage-target.js";
export type { StorageTarget, ConnectionStringParts } from "./storage-target.js";
export {
  createBlobServiceClient,
  openContainer,
  DEFAULT_MAX_RETRIES,
  DEFAULT_RETRY_DELAY_MS,
  DEFAULT_MAX_RETRY_DELAY_MS,
  DEFAULT_MAX_SOCKETS,
} from "./client.js";
export type { BlobClientOptions } from "./client.js";
export { BlobContainer } from "./container.js";
export { jobLogContainer } from "./job-containers.js";
export type { BlobLevelEntry, BlobProperties } from "./container.js";
export {
  blockIdFor,
  chooseBlockSize,
  DEFAULT_BLOCK_SIZE_BYTES,
  MAX_BLOCK_SIZE_BYTES,
  MAX_BLOCKS_PER_BLOB,
  BLOCK_ID_RAW_LENGTH,
} from "./blocks.js";
export { MemoryBudget, DEFAULT_MEMORY_BUDGET_BYTES } from "./memory-budget.js";
export {
  RangeBufferPool,
  RANGE_BUFFER_POOL_DEFAULTS,
  processRangeBuffers,
} from "./range-buffers.js";
export type { RangeBufferPoolOptions } from "./range-buffers.js";
export { uploadFile, DEFAULT_UPLOAD_CONCURRENCY } from "./upload.js";
export { blockCrc64 } from "./block-checksum.js";
export type { UploadFileOptions, UploadResult } from "./upload.js";
export { checkIdentity } from "./source-identity.js";
export type { SourceBeneath, SourceIdentity } from "./source-identity.js";
export {
  BlobOperationError,
  FileChangedError,
  httpErrorInfo,
  isRetryableHttpError,
} from "./errors.js";
export type { BlobOperation, BlobOperationSubject, FileSnapshot, HttpErrorInfo } from "./errors.js";
export {
  downloadRange,
  downloadRangeChecked,
  downloadBlobToFile,
  downloadSmallBlobTo,
  verifyFileMd5,
  DEFAULT_RANGE_SIZE_BYTES,
  DEFAULT_DOWNLOAD_CONCURRENCY,
} from "./download.js";
export type { DownloadRangeOptions, DownloadResult, RangeDownload } from "./download.js";
export type { SmallBlobWriter, SmallBlobWritten } from "./small-download.js";
export { BlobChangedError, BlobChecksumError, RangeChecksumError } from "./download-errors.js";
export { RANGE_CRC64_MAX_BYTES, RANGE_CRC64_TRIES } from "./range-crc64.js";
export {
  createRetryPolicy,
  installRetryPolicy,
  retryAfterMs,
  retryDelayMs,
  blobRetryStats,
  RETRY_POLICY_NAME,
} from "./retry-policy.js";
export type { RetryPolicyOptions, RetryInfo } from "./retry-policy.js";
export { stageFileRange, commitStagedFile, blockListFor } from "./stage-range.js";
export type {
  StageRangeOptions,
  StageRangeResult,
  CommitStagedOptions,
  ExpectedFile,
} from "./stage-range.js";
export { TokenBucket, systemClock } from "./token-bucket.js";
export type { Clock, TokenBucketOptions } from "./token-bucket.js";
export { RequestSlots } from "./request-slots.js";
export type { SlotSample, SlotRelease } from "./request-slots.js";
export { ConcurrencyController, CONCURRENCY_DEFAULTS } from "./concurrency-controller.js";
export type { ConcurrencyControllerOptions, ConcurrencyReason } from "./concurrency-controller.js";
export { RequestConcurrency } from "./request-concurrency.js";
export type { RequestConcurrencyOptions } from "./request-concurrency.js";
export {
  createPacingPolicy,
  installPacingPolicy,
  isDataRequest,
  rangeLength,
  PACING_POLICY_NAME,
} from "./request-pacing.js";
export type { RequestLimits, RequestPacing } from "./request-pacing.js";
