import { READ_NOATIME } from "./read-flags.js";
import {
  close as fsClose,
  constants as fsConstants,
  fstat as fsFstat,
  open as fsOpen,
  read as fsRead,
} from "node:fs";
import type { BigIntStats } from "node:fs";
import { displayPath, errorMessage } from "@hsmfleet/core";
import { readBlockCrc64 } from "./block-checksum.js";
import { DEFAULT_BLOCK_SIZE_BYTES, blockIdFor, chooseBlockSize } from "./blocks.js";
import type { BlobContainer } from "./container.js";
import {
  BlobOperationError,
  FileChangedError,
  abortCause,
  fsFailure,
  type BlobOperationSubject,
  type FileSnapshot,
} from "./errors.js";
import { DEFAULT_MEMORY_BUDGET_BYTES, MemoryBudget } from "./memory-budget.js";
import { THREAD_HASH_MIN_BYTES, hashFailure, md5Here, md5Service } from "./md5-threads.js";
import { SMALL_FILE_MAX_BYTES, putSmallFile } from "./small-put.js";
import { checkIdentity } from "./source-identity.js";
import type { SourceBeneath, SourceIdentity } from "./source-identity.js";

/** Stages in flight per file unless the caller says otherwise. */
export const DEFAULT_UPLOAD_CONCURRENCY = 8;

/** Budget of uploads that are not given one: shared by the whole process. */
const processBudget = new MemoryBudget();

export interface UploadFileOptions {
  /** Blob metadata (metadataForEntry in core), set with the Put Blob or the commit. */
  metadata: Record<string, string>;
  /** Preferred block size (default 8 MiB, grown by chooseBlockSize); files up to it use one Put Blob. */
  blockSizeBytes?: number;
  /** Blocks staged in parallel for this file. Default 8. */
  concurrency?: number;
  /** Shared by a worker's uploads; default one process-wide 512 MiB budget. */
  budget?: MemoryBudget;
  /** Aborts reads and requests in flight; nothing is committed. */
  abortSignal?: AbortSignal;
  /** Called with the byte count of each uploaded part (block or whole blob). */
  onProgress?: (bytes: number) => void;
  /**
   * Size and mtime from the walk; a file that differs at open is a FileChangedError. `ino` (and
   * `dev`), when given and not 0, must match the file opened: another inode means something on
   * its path was replaced since the walk, and the file fails with a non-retryable error.
   */
  expected?: SourceIdentity;
  /**
   * Open the file beneath this job root directory fd, by `rel` (raw bytes relative to the root),
   * with no symlink followed on any component (@hsmfleet/fs openBeneath); `localPath` is then only
   * shown in messages. Default: `localPath` is opened with O_NOFOLLOW on its last component only.
   */
  beneath?: SourceBeneath;
}

export interface UploadResult {
  bytes: number;
  /** MD5 of the whole file, as stored in the blob's Content-MD5. */
  md5: Buffer;
  /** Blocks committed; 0 when the file went up in one Put Blob. */
  blocks: number;
}

interface Snapshot extends FileSnapshot {
  ctimeNs: bigint;
}

const changed = (a: Snapshot, b: Snapshot): boolean =>
  a.size !== b.size || a.mtimeNs !== b.mtimeNs || a.ctimeNs !== b.ctimeNs;

// ---------------------------------------------------------------------------------------------
// File access on plain descriptors: the callback API costs about half of what FileHandle's
// promise wrappers do per call, which shows with many small files (5 calls per file).

/** A symlink put in the file's place after the walk is not followed (ELOOP), as small-put.ts. */
const OPEN_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | READ_NOATIME;

const openFd = (path: Buffer): Promise<number> =>
  new Promise((resolve, reject) =>
    fsOpen(path, OPEN_FLAGS, (err, fd) => (err ? reject(err) : resolve(fd))),
  );

/** Opens the source (beneath its job root when given) and checks it is what the walk saw. */
const openSource = async (
  localPath: Buffer,
  where: BlobOperationSubject,
  beneath: SourceBeneath | undefined,
  expected: SourceIdentity | undefined,
): Promise<number> => {
  if (beneath === undefined) {
    try {
      return await openFd(localPath);
    } catch (err) {
      throw fsFailure("open", where, err);
    }
  }
  const { openBeneath } = await import("@hsmfleet/fs");
  let opened: { fd: number; stat: { dev: bigint; ino: bigint } };
  try {
    opened = await openBeneath(beneath.rootFd, beneath.rel, fsConstants.O_RDONLY | READ_NOATIME);
  } catch (err) {
    throw fsFailure("open", where, err);
  }
  try {
    checkIdentity(where, expected, opened.stat.dev, opened.stat.ino);
  } catch (err) {
    await closeFd(opened.fd);
    throw err;
  }
  return opened.fd;
};

const fstatFd = (fd: number): Promise<BigIntStats> =>
  new Promise((resolve, reject) =>
    fsFstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))),
  );

const readFd = (fd: number, buf: Buffer, offset: number, length: number, position: number) =>
  new Promise<number>((resolve, reject) =>
    fsRead(fd, buf, offset, length, position, (err, n) => (err ? reject(err) : resolve(n))),
  );

const closeFd = (fd: number): Promise<void> =>
  new Promise((resolve) => fsClose(fd, () => resolve()));

const snapshot = async (fd: number, where: BlobOperationSubject): Promise<Snapshot> => {
  let st: BigIntStats;
  try {
    st = await fstatFd(fd);
  } catch (err) {
    throw fsFailure("stat", where, err);
  }
  if (!st.isFile()) {
    throw new BlobOperationError("stat", where, undefined, {
      detail: "not a regular file",
      retryable: false,
    });
  }
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
};

/** Reads `length` bytes at `position` into `buf`; returns the count read (less at EOF). */
const readAt = async (
  fd: number,
  buf: Buffer,
  length: number,
  position: number,
  where: BlobOperationSubject,
  signal: AbortSignal | undefined,
): Promise<number> => {
  let done = 0;
  while (done < length) {
    if (signal?.aborted) throw new BlobOperationError("read", where, abortCause(signal));
    let bytesRead: number;
    try {
      bytesRead = await readFd(fd, buf, done, length - done, position + done);
    } catch (err) {
      throw fsFailure("read", where, err);
    }
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
};

const acquire = async (
  budget: MemoryBudget,
  n: number,
  signal: AbortSignal | undefined,
  where: BlobOperationSubject,
): Promise<void> => {
  try {
    await budget.acquire(n, signal);
  } catch (err) {
    throw new BlobOperationError("read", where, signal?.aborted ? abortCause(signal) : err);
  }
};

// ---------------------------------------------------------------------------------------------
// Block buffers: SharedArrayBuffer-backed, so the MD5 threads read them in place (no copy), and
// reused, so a steady upload does not fault in (and the GC does not sweep) fresh memory for every
// block. Only full blocks are pooled: a short last block is read into a full-size buffer too. A
// fresh 8 MiB buffer costs far more than its bytes (page faults on the first read, unmapping when
// both heaps collect it): reading 2 GiB into fresh buffers took 6 CPU seconds against 0.6 into
// reused ones. So the pool keeps up to a worker's default memory budget of idle buffers — never
// more than were in use at once, as a buffer is only created when the pool has none — which
// covers the hand-over when several chunks or files end together, and empties itself after 10 s
// without uploads. The memory budget counts every buffer in use, not the idle ones.

const POOL_MAX_BYTES = DEFAULT_MEMORY_BUDGET_BYTES;
const POOL_IDLE_MS = 10_000;

class BlockBufferPool {
  readonly #free = new Map<number, Buffer[]>();
  #bytes = 0;
  #idle: NodeJS.Timeout | undefined;

  take(size: number): Buffer {
    const reused = this.#free.get(size)?.pop();
    if (reused !== undefined) {
      this.#bytes -= size;
      return reused;
    }
    return Buffer.from(new SharedArrayBuffer(size));
  }

  give(buf: Buffer): void {
    if (buf.length === 0 || this.#bytes + buf.length > POOL_MAX_BYTES) return;
    let list = this.#free.get(buf.length);
    if (list === undefined) {
      list = [];
      this.#free.set(buf.length, list);
    }
    list.push(buf);
    this.#bytes += buf.length;
    if (this.#idle === undefined) {
      this.#idle = setTimeout(() => this.clear(), POOL_IDLE_MS);
      this.#idle.unref();
    } else {
      this.#idle.refresh();
    }
  }

  clear(): void {
    this.#free.clear();
    this.#bytes = 0;
    if (this.#idle !== undefined) clearTimeout(this.#idle);
    this.#idle = undefined;
  }
}

const blockBuffers = new BlockBufferPool();

/**
 * A SharedArrayBuffer-backed block buffer from the process's pool (stage-range.ts uses it too):
 * fresh shared buffers handed to the MD5 threads are freed only when both heaps collect them,
 * which at hundreds of MiB/s let RSS grow to gigabytes. Give it back with giveBlockBuffer.
 */
export const takeBlockBuffer = (size: number): Buffer => blockBuffers.take(size);
export const giveBlockBuffer = (buf: Buffer): void => blockBuffers.give(buf);

/**
 * Uploads one regular file (raw path bytes) to blob `name`, byte-exact, with MD5s:
 * - size ≤ block size: one read into a budgeted buffer, then Put Blob (Content-MD5 checked by the
 *   service, whole-file MD5 stored, metadata in the same request; one MD5 pass serves both);
 * - larger: sequential reads of one block each into budgeted (reused) buffers, up to
 *   `concurrency` blocks staged at once, each with its CRC64 (x-ms-content-crc64, checked by the
 *   service; native, on the threadpool), then Put Block List with metadata and the whole-file MD5
 *   (one MD5 pass, on a helper thread, in parallel with the reads and the requests).
 * The open file is fstat'ed before the first and after the last read; a change of size, mtime or
 * ctime, or a short read, is a FileChangedError and nothing is committed (uncommitted blocks are
 * discarded by the service after a week). Other failures are BlobOperationError with the path,
 * the operation, the HTTP status and Azure error code, and `retryable`.
 */
export const uploadFile = async (
  container: BlobContainer,
  localPath: Buffer,
  name: string,
  options: UploadFileOptions,
): Promise<UploadResult> => {
  // Small files the walk listed: one native read job and one Put Blob (small-put.ts).
  const listed = options.expected;
  if (
    listed !== undefined &&
    options.abortSignal?.aborted !== true &&
    listed.size <= SMALL_FILE_MAX_BYTES &&
    listed.size <= (options.blockSizeBytes ?? DEFAULT_BLOCK_SIZE_BYTES)
  ) {
    const done = await putSmallFile(container, localPath, name, {
      metadata: options.metadata,
      expected: listed,
      beneath: options.beneath,
      budget: options.budget ?? processBudget,
      abortSignal: options.abortSignal,
      onProgress: options.onProgress,
    });
    if (done !== undefined) return done;
  }
  const shown = displayPath(localPath);
  const where: BlobOperationSubject = { path: shown, blobName: name, container: container.name };
  const signal = options.abortSignal;
  const concurrency = options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`upload concurrency must be a positive integer, got ${concurrency}`);
  }
  if (signal?.aborted) throw new BlobOperationError("open", where, abortCause(signal));
  const fd = await openSource(localPath, where, options.beneath, options.expected);
  try {
    const before = await snapshot(fd, where);
    const expected = options.expected;
    if (expected !== undefined) {
      const listed: FileSnapshot = {
        size: expected.size,
        mtimeNs: BigInt(expected.mtimeSec) * 1_000_000_000n + BigInt(expected.mtimeNsec),
      };
      if (listed.size !== before.size || listed.mtimeNs !== before.mtimeNs) {
        throw new FileChangedError(shown, listed, before, "listed");
      }
    }
    let blockSize: number;
    try {
      blockSize = chooseBlockSize(before.size, options.blockSizeBytes);
    } catch (err) {
      throw new BlobOperationError("stat", where, err, {
        detail: errorMessage(err),
        retryable: false,
      });
    }
    const budget = options.budget ?? processBudget;
    const ctx: UploadContext = { container, fd, name, where, shown, before, budget, options };
    if (before.size <= blockSize) return await singlePut(ctx, blockSize);
    return await blockUpload(ctx, blockSize, concurrency);
  } finally {
    await closeFd(fd);
  }
};

interface UploadContext {
  container: BlobContainer;
  fd: number;
  name: string;
  where: BlobOperationSubject;
  shown: string;
  before: Snapshot;
  budget: MemoryBudget;
  options: UploadFileOptions;
}

/** Throws FileChangedError when the file differs from `before` now. */
const checkUnchanged = async (ctx: UploadContext, shortRead: boolean): Promise<void> => {
  const after = await snapshot(ctx.fd, ctx.where);
  if (shortRead || changed(ctx.before, after)) {
    throw new FileChangedError(ctx.shown, ctx.before, after, "upload");
  }
};

const singlePut = async (ctx: UploadContext, blockSize: number): Promise<UploadResult> => {
  const { size } = ctx.before;
  const signal = ctx.options.abortSignal;
  const threaded = size >= THREAD_HASH_MIN_BYTES;
  // Files of more than half a block read into a pooled block buffer: fresh shared buffers are
  // freed late (both heaps must collect them), which let a worker exporting many 8 MiB files
  // reach 839 MiB RSS against a 512 MiB budget (fleet benchmark). The budget counts the buffer.
  const pooled = threaded && size > blockSize / 2;
  const held = pooled ? blockSize : size;
  await acquire(ctx.budget, held, signal, ctx.where);
  const block = pooled ? blockBuffers.take(blockSize) : undefined;
  try {
    const buf =
      block !== undefined
        ? block.subarray(0, size)
        : threaded
          ? Buffer.from(new SharedArrayBuffer(size))
          : Buffer.allocUnsafe(size);
    const n = size === 0 ? 0 : await readAt(ctx.fd, buf, size, 0, ctx.where, signal);
    await checkUnchanged(ctx, n < size);
    let md5: Buffer;
    try {
      md5 = threaded ? await md5Service().block(buf) : md5Here(buf);
    } catch (err) {
      throw hashFailure(ctx.where, err);
    }
    await ctx.container.putBlob(ctx.name, buf, {
      metadata: ctx.options.metadata,
      contentMD5: md5,
      localPath: ctx.shown,
      ...(signal ? { abortSignal: signal } : {}),
    });
    ctx.options.onProgress?.(size);
    return { bytes: size, md5, blocks: 0 };
  } finally {
    if (block !== undefined) blockBuffers.give(block);
    ctx.budget.release(held);
  }
};

const blockUpload = async (
  ctx: UploadContext,
  blockSize: number,
  concurrency: number,
): Promise<UploadResult> => {
  const { size } = ctx.before;
  const outer = ctx.options.abortSignal;
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  const whole = md5Service().file();
  const ids: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort();
  };
  const blockCount = Math.ceil(size / blockSize);
  try {
    for (let i = 0; i < blockCount && failure === undefined; i++) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
      if (signal.aborted) throw new BlobOperationError("read", ctx.where, abortCause(signal));
      const offset = i * blockSize;
      const length = Math.min(blockSize, size - offset);
      // Every block is read into a pooled full-size buffer (held, and counted, whole).
      await acquire(ctx.budget, blockSize, signal, ctx.where);
      const block = blockBuffers.take(blockSize);
      const buf = length === blockSize ? block : block.subarray(0, length);
      // The block's own check is its CRC64 (x-ms-content-crc64), computed natively in the same
      // threadpool job as the read (readBlockCrc64); the MD5 thread hashes each byte once, for
      // the whole-file MD5 only.
      let crc: Buffer;
      try {
        if (signal.aborted) throw new BlobOperationError("read", ctx.where, abortCause(signal));
        let read: { bytesRead: number; crc64: Buffer };
        try {
          read = await readBlockCrc64(ctx.fd, buf, offset);
        } catch (err) {
          throw fsFailure("read", ctx.where, err);
        }
        if (read.bytesRead < length) await checkUnchanged(ctx, true);
        crc = read.crc64;
      } catch (err) {
        blockBuffers.give(block);
        ctx.budget.release(blockSize);
        throw err;
      }
      // In file order: the whole-file MD5 thread receives the blocks as they are read.
      const hashed = whole.update(buf).catch((err: unknown) => fail(hashFailure(ctx.where, err)));
      const id = blockIdFor(offset);
      ids.push(id);
      const sent = (async () => {
        await ctx.container.stageBlock(ctx.name, id, buf, {
          contentCrc64: crc,
          abortSignal: signal,
          localPath: ctx.shown,
        });
        ctx.options.onProgress?.(length);
      })().catch(fail);
      // The buffer is free again once both the request and the whole-file hash are done with it.
      const staged: Promise<void> = Promise.all([hashed, sent]).then(() => {
        blockBuffers.give(block);
        ctx.budget.release(blockSize);
        inFlight.delete(staged);
      });
      inFlight.add(staged);
    }
    // Everything was read: the file must not have changed since the first fstat.
    if (failure === undefined) await checkUnchanged(ctx, false);
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure.error;
    if (outer?.aborted)
      throw new BlobOperationError("commit-block-list", ctx.where, abortCause(outer));
    let md5: Buffer;
    try {
      md5 = await whole.digest();
    } catch (err) {
      throw hashFailure(ctx.where, err);
    }
    await ctx.container.commitBlockList(ctx.name, ids, {
      metadata: ctx.options.metadata,
      contentMD5: md5,
      localPath: ctx.shown,
      ...(outer ? { abortSignal: outer } : {}),
    });
    return { bytes: size, md5, blocks: ids.length };
  } catch (err) {
    stop.abort();
    await Promise.allSettled(inFlight);
    whole.drop();
    throw err;
  }
};
