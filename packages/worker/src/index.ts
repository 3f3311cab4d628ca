export { Worker } from "./worker.js";
export type { WorkerStats } from "./worker.js";
export { WORKER_DEFAULTS, resolveWorkerOptions } from "./options.js";
export type { WorkerOptions, WorkerHooks, ResolvedWorkerOptions } from "./options.js";
export { VerifyDifference, VERIFY_OPERATION } from "./verify/verify-visitor.js";
