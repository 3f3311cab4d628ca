import { createHash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import { displayPath, errorCode, errorMessage } from "@hsmfleet/core";
import { blockIdFor, chooseBlockSize } from "./blocks.js";
import type { BlobContainer } from "./container.js";
import {
  BlobOperationError,
  FileChangedError,
  type BlobOperation,
  type BlobOperationSubject,
  type FileSnapshot,
} from "./errors.js";
import { MemoryBudget } from "./memory-budget.js";

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
  /** Size and mtime from the walk; a file that differs at open is a FileChangedError. */
  expected?: { size: number; mtimeSec: number; mtimeNsec: number };
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

/** An AbortError carrying the signal's reason, so BlobOperationError reports "aborted". */
const abortCause = (signal: AbortSignal): Error => {
  const err = new Error("aborted", { cause: signal.reason });
  err.name = "AbortError";
  return err;
};

/** Local file failure: `<op> <path> → blob …: EACCES: permission denied`. Not retryable. */
const fsFailure = (
  operation: BlobOperation,
  where: BlobOperationSubject,
  err: unknown,
): BlobOperationError => {
  const code = errorCode(err);
  const text = errorMessage(err)
    .replace(/^[A-Z0-9_]+: /, "")
    .replace(/, \w+ '[\s\S]*'$/, "");
  return new BlobOperationError(operation, where, err, {
    detail: `${code}: ${text}`,
    retryable: false,
  });
};

const snapshot = async (handle: FileHandle, where: BlobOperationSubject): Promise<Snapshot> => {
  try {
    const st = await handle.stat({ bigint: true });
    if (!st.isFile()) {
      throw new BlobOperationError("stat", where, undefined, {
        detail: "not a regular file",
        retryable: false,
      });
    }
    return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
  } catch (err) {
    if (err instanceof BlobOperationError) throw err;
    throw fsFailure("stat", where, err);
  }
};

/** Reads `length` bytes at `position` into `buf`; returns the count read (less at EOF). */
const readAt = async (
  handle: FileHandle,
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
      ({ bytesRead } = await handle.read(buf, done, length - done, position + done));
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

/**
 * Uploads one regular file (raw path bytes) to blob `name`, byte-exact, with MD5s:
 * - size ≤ block size: one read into a budgeted buffer, then Put Blob (Content-MD5 checked by the
 *   service, whole-file MD5 stored, metadata in the same request);
 * - larger: sequential reads of one block each into budgeted buffers, whole-file MD5 computed as
 *   they stream, up to `concurrency` blocks staged at once (each with its Content-MD5), then Put
 *   Block List with metadata and the whole-file MD5.
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
  const shown = displayPath(localPath);
  const where: BlobOperationSubject = { path: shown, blobName: name, container: container.name };
  const signal = options.abortSignal;
  const concurrency = options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`upload concurrency must be a positive integer, got ${concurrency}`);
  }
  if (signal?.aborted) throw new BlobOperationError("open", where, abortCause(signal));
  let handle: FileHandle;
  try {
    handle = await open(localPath, "r");
  } catch (err) {
    throw fsFailure("open", where, err);
  }
  try {
    const before = await snapshot(handle, where);
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
    const ctx: UploadContext = { container, handle, name, where, shown, before, budget, options };
    if (before.size <= blockSize) return await singlePut(ctx);
    return await blockUpload(ctx, blockSize, concurrency);
  } finally {
    await handle.close().catch(() => undefined);
  }
};

interface UploadContext {
  container: BlobContainer;
  handle: FileHandle;
  name: string;
  where: BlobOperationSubject;
  shown: string;
  before: Snapshot;
  budget: MemoryBudget;
  options: UploadFileOptions;
}

/** Throws FileChangedError when the file differs from `before` now. */
const checkUnchanged = async (ctx: UploadContext, shortRead: boolean): Promise<void> => {
  const after = await snapshot(ctx.handle, ctx.where);
  if (shortRead || changed(ctx.before, after)) {
    throw new FileChangedError(ctx.shown, ctx.before, after, "upload");
  }
};

const singlePut = async (ctx: UploadContext): Promise<UploadResult> => {
  const { size } = ctx.before;
  const signal = ctx.options.abortSignal;
  await acquire(ctx.budget, size, signal, ctx.where);
  try {
    const buf = Buffer.allocUnsafe(size);
    const n = size === 0 ? 0 : await readAt(ctx.handle, buf, size, 0, ctx.where, signal);
    await checkUnchanged(ctx, n < size);
    const md5 = createHash("md5").update(buf).digest();
    await ctx.container.putBlob(ctx.name, buf, {
      metadata: ctx.options.metadata,
      contentMD5: md5,
      localPath: ctx.shown,
      ...(signal ? { abortSignal: signal } : {}),
    });
    ctx.options.onProgress?.(size);
    return { bytes: size, md5, blocks: 0 };
  } finally {
    ctx.budget.release(size);
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
  const hash = createHash("md5");
  const ids: string[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const blockCount = Math.ceil(size / blockSize);
  try {
    for (let i = 0; i < blockCount && failure === undefined; i++) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
      if (signal.aborted) throw new BlobOperationError("read", ctx.where, abortCause(signal));
      const offset = i * blockSize;
      const length = Math.min(blockSize, size - offset);
      await acquire(ctx.budget, length, signal, ctx.where);
      let buf: Buffer;
      try {
        buf = Buffer.allocUnsafe(length);
        const n = await readAt(ctx.handle, buf, length, offset, ctx.where, signal);
        if (n < length) await checkUnchanged(ctx, true);
      } catch (err) {
        ctx.budget.release(length);
        throw err;
      }
      hash.update(buf);
      const id = blockIdFor(offset);
      ids.push(id);
      const staged: Promise<void> = ctx.container
        .stageBlock(ctx.name, id, buf, { abortSignal: signal, localPath: ctx.shown })
        .then(
          () => ctx.options.onProgress?.(length),
          (error: unknown) => {
            failure ??= { error };
            stop.abort();
          },
        )
        .finally(() => {
          ctx.budget.release(length);
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
    const md5 = hash.digest();
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
    throw err;
  }
};
