// Directory reads, lstat and xattr calls run on libuv's threadpool (4 threads by default). A worker
// keeps many directories in flight, so give it more unless the admin chose a size. This module is
// imported first, before anything touches the pool (the pool is created on first use).
process.env["UV_THREADPOOL_SIZE"] ??= "16";
export {};
