export { Worker } from "./worker.js";
export type { WorkerStats } from "./worker.js";
export { WORKER_DEFAULTS, resolveWorkerOptions } from "./options.js";
export type { WorkerOptions, WorkerHooks, ResolvedWorkerOptions } from "./options.js";
export { VerifyDifference, VERIFY_OPERATION } from "./verify/verify-visitor.js";
export {
  admitWorkItem,
  blobNameFor,
  unsafePathReason,
  RefusedWorkItemError,
  UndecodableWorkItemError,
  UnsolicitedWorkItemError,
  UnsafeWorkItemError,
  WALK_SHARD_RULES,
  TRANSFER_BATCH_RULES,
  CHUNK_RULES,
  HSM_ACTION_LIST_RULES,
} from "./item-checks.js";
export type { WorkItemRules, RefusalCode, RefusedItem } from "./item-checks.js";
export type { BenchSeams } from "./options.js";
export { posixNamespace } from "./walk/walk-namespace.js";
export type { WalkNamespace, DirectoryReadOptions } from "./walk/walk-namespace.js";
export { SyntheticNamespace } from "./bench/synthetic-namespace.js";
export type { SyntheticTreeSpec } from "./bench/synthetic-namespace.js";
export { listingWindowStats } from "./export/listing-window.js";
export { importLevelStats } from "./import/import-level-stats.js";
export { BlobChangeApplier, emptyAutoImportCounters } from "./autoimport/apply-blob-change.js";
export type {
  AutoImportCounters,
  AppliedChange,
  BlobChangeApplierOptions,
} from "./autoimport/apply-blob-change.js";
export { AutoImportLedger, AUTOIMPORT_BUCKET } from "./autoimport/autoimport-ledger.js";
export type { AutoImportStatus } from "./autoimport/autoimport-status.js";
export { autoImportJobRecord, autoImportJobSpec } from "./autoimport/autoimport-job-record.js";
export type { AutoImportSpecFields } from "./autoimport/autoimport-job-record.js";
export {
  runAutoImportService,
  prepareAutoImportRun,
  AUTOIMPORT_DEFAULTS,
} from "./autoimport/autoimport-service.js";
export type { AutoImportServiceOptions } from "./autoimport/autoimport-service.js";
export { ImportTarget } from "./import/import-target.js";
export type { ImportTargetOptions } from "./import/import-target.js";
export {
  describeServiceBus,
  isServiceBusError,
  serviceBusClientFor,
} from "./autoimport/service-bus-client.js";
export type { ServiceBusTarget } from "./autoimport/service-bus-client.js";
export { PING_BURST, PING_REFILL_MS } from "./runtime/heartbeat.js";
