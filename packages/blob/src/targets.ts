// The light half of @hsmfleet/blob: storage targets, secret redaction and the memory budget, with
// no Azure SDK behind them. Commands that only parse --storage (and workers before their first
// transfer) import this, so a scan never loads the SDK's few hundred modules.
export {
  parseStorageTarget,
  parseConnectionString,
  describeStorageTarget,
  redactSecrets,
} from "./storage-target.js";
export type { StorageTarget, ConnectionStringParts } from "./storage-target.js";
export { chooseBlockSize } from "./blocks.js";
export { jobLogContainer } from "./job-containers.js";
export { MemoryBudget, DEFAULT_MEMORY_BUDGET_BYTES } from "./memory-budget.js";
export { TokenBucket } from "./token-bucket.js";
export { RequestConcurrency } from "./request-concurrency.js";
export type { RequestConcurrencyOptions } from "./request-concurrency.js";
export type { ConcurrencyReason } from "./concurrency-controller.js";
export type { RequestLimits, RequestPacing } from "./request-pacing.js";
