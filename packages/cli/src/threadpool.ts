// Directory reads, lstat and xattr calls run on libuv's threadpool (4 threads by default). A worker
// keeps many directories in flight, so give it more unless the admin chose a size. The pool is
// made at its first use with the size set then: the launcher (bin/hsmfleet.js, CommonJS so that
// Node loads it without the pool) sets it first; this module only covers the compiled modules run
// without the launcher (node dist/src/bin.js), and an ES-module main has used the pool by then.
process.env["UV_THREADPOOL_SIZE"] ??= "16";
export {};
