// Imported first by the export benchmark: `hsmfleet worker` runs with 16 libuv threads (see
// packages/cli/src/threadpool.ts), so the in-process worker measured here gets the same. It must
// be set before anything touches the pool (the pool is created on first use).
process.env["UV_THREADPOOL_SIZE"] ??= "16";
export {};
