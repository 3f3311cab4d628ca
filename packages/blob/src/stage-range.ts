/**
 * Chunked upload of one large file by several workers: each stages the blocks of its byte range
 * (stageFileRange), and once every range is staged one of them commits the block list
 * (commitStagedFile). Block ids are blocks.ts's blockIdFor(offset) — the same ids uploadFile uses —
 * so the list is known from the file size and the block size alone, and staging a block again
 * (a redelivered chunk) replaces it with the same bytes under the same id.
 */
import { READ_NOATIME } from "./read-flags.js";
import { constants as fsConstants } from "node:fs";
import { lstat, open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { displayPath } from "@hsmfleet/core";
import { readBlockCrc64 } from "./block-checksum.js";
import { blockIdFor } from "./blocks.js";
import type { BlobContainer } from "./container.js";
import {
  BlobOperationError,
  FileChangedError,
  abortCause,
  fsFailure,
  type BlobOperationSubject,
  type FileSnapshot,
} from "./errors.js";
import { MemoryBudget } from "./memory-budget.js";
import { checkIdentity } from "./source-identity.js";
import type { SourceBeneath, SourceIdentity } from "./source-identity.js";
import { DEFAULT_UPLOAD_CONCURRENCY, giveBlockBuffer, takeBlockBuffer } from "./upload.js";

/**
 * Size and mtime the walk saw; the file must still have them when read and when committed. With
 * `ino` (and `dev`) the file opened must also be that inode.
 */
export type ExpectedFile = SourceIdentity;

/** Opens the range's file beneath its job root fd when `beneath` is given (see UploadFileOptions). */
const openRangeFile = async (
  localPath: Buffer,
  where: BlobOperationSubject,
  beneath: SourceBeneath | undefined,
  expected: SourceIdentity,
): Promise<FileHandle> => {
  if (beneath === undefined) {
    try {
      return await open(localPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | READ_NOATIME);
    } catch (err) {
      throw fsFailure("open", where, err);
    }
  }
  const { openFileBeneath } = await import("@hsmfleet/fs");
  let opened: { handle: FileHandle; stat: { dev: bigint; ino: bigint } };
  try {
    opened = await openFileBeneath(
      beneath.rootFd,
      beneath.rel,
      fsConstants.O_RDONLY | READ_NOATIME,
    );
  } catch (err) {
    throw fsFailure("open", where, err);
  }
  try {
    checkIdentity(where, expected, opened.stat.dev, opened.stat.ino);
  } catch (err) {
    await opened.handle.close();
    throw err;
  }
  return opened.handle;
};

export interface StageRangeOptions {
  /** First byte of the range; a multiple of `blockSize`. */
  offset: number;
  /** Bytes in the range (the last range of a file may be shorter). */
  length: number;
  /** Block size of the whole file (every range of one file uses the same). */
  blockSize: number;
  expected: ExpectedFile;
  /** Open the file beneath a job root fd (no symlink followed anywhere); localPath is shown only. */
  beneath?: SourceBeneath | undefined;
  /** Blocks staged in parallel. Default 8. */
  concurrency?: number | undefined;
  /** Block buffers are taken from it. Default: a 512 MiB budget of this call's own. */
  budget?: MemoryBudget | undefined;
  abortSignal?: AbortSignal | undefined;
  /** Called with each staged block's byte count. */
  onProgress?: ((bytes: number) => void) | undefined;
}

export interface StageRangeResult {
  bytes: number;
  blocks: number;
}

const expectedSnapshot = (e: ExpectedFile): FileSnapshot => ({
  size: e.size,
  mtimeNs: BigInt(e.mtimeSec) * 1_000_000_000n + BigInt(e.mtimeNsec),
});

const sameFile = (a: FileSnapshot, b: FileSnapshot): boolean =>
  a.size === b.size && a.mtimeNs === b.mtimeNs;

/** The ids of every block of a file of `fileSize` bytes cut in `blockSize` blocks, in order. */
export const blockListFor = (fileSize: number, blockSize: number): string[] => {
  if (!Number.isSafeInteger(blockSize) || blockSize < 1)
    throw new RangeError(`block size must be a positive integer, got ${blockSize}`);
  const ids: string[] = [];
  for (let offset = 0; offset < fileSize; offset += blockSize) ids.push(blockIdFor(offset));
  return ids;
};

const snapshotOf = async (fh: FileHandle, where: BlobOperationSubject): Promise<FileSnapshot> => {
  try {
    const st = await fh.stat({ bigint: true });
    return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
  } catch (err) {
    throw fsFailure("stat", where, err);
  }
};

/**
 * Stages the blocks of `[offset, offset + length)` of a local file as blocks of blob `name`, each
 * with its CRC64 (x-ms-content-crc64, checked by the service; computed natively in the same
 * threadpool job as the block's read, see readBlockCrc64). The file is fstat'ed at open and after the last
 * read: a size or mtime other than `expected`, or a short read, is a FileChangedError. Nothing is
 * committed here.
 */
export const stageFileRange = async (
  container: BlobContainer,
  localPath: Buffer,
  name: string,
  options: StageRangeOptions,
): Promise<StageRangeResult> => {
  const shown = displayPath(localPath);
  const where: BlobOperationSubject = { path: shown, blobName: name, container: container.name };
  const { offset, length, blockSize } = options;
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % blockSize !== 0)
    throw new RangeError(`range offset ${offset} is not a multiple of the block size ${blockSize}`);
  const concurrency = options.concurrency ?? DEFAULT_UPLOAD_CONCURRENCY;
  const budget = options.budget ?? new MemoryBudget();
  const outer = options.abortSignal;
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  if (signal.aborted) throw new BlobOperationError("open", where, abortCause(signal));
  const fh = await openRangeFile(localPath, where, options.beneath, options.expected);
  const listed = expectedSnapshot(options.expected);
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort();
  };
  let blocks = 0;
  try {
    const before = await snapshotOf(fh, where);
    if (!sameFile(listed, before)) throw new FileChangedError(shown, listed, before, "listed");
    const end = offset + length;
    for (let at = offset; at < end && failure === undefined; at += blockSize) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
      if (signal.aborted) throw new BlobOperationError("read", where, abortCause(signal));
      const n = Math.min(blockSize, end - at);
      // A pooled full-size buffer even for a short last block (held, and counted, whole): fresh
      // memory for every block costs page faults and unmapping (see upload.ts's pool).
      try {
        await budget.acquire(blockSize, signal);
      } catch (err) {
        throw new BlobOperationError("read", where, signal.aborted ? abortCause(signal) : err);
      }
      const block = takeBlockBuffer(blockSize);
      const buf = n === blockSize ? block : block.subarray(0, n);
      // The read and the block's CRC64 in one threadpool job.
      let read: { bytesRead: number; crc64: Buffer };
      try {
        read = await readBlockCrc64(fh.fd, buf, at);
      } catch (err) {
        giveBlockBuffer(block);
        budget.release(blockSize);
        throw fsFailure("read", where, err);
      }
      if (read.bytesRead < n) {
        giveBlockBuffer(block);
        budget.release(blockSize);
        throw new FileChangedError(shown, before, await snapshotOf(fh, where), "upload");
      }
      const id = blockIdFor(at);
      const crc = read.crc64;
      const sent: Promise<void> = (async () => {
        await container.stageBlock(name, id, buf, {
          contentCrc64: crc,
          abortSignal: signal,
          localPath: shown,
        });
        blocks++;
        options.onProgress?.(n);
      })()
        .catch(fail)
        .finally(() => {
          giveBlockBuffer(block);
          budget.release(blockSize);
          inFlight.delete(sent);
        });
      inFlight.add(sent);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure.error;
    const after = await snapshotOf(fh, where);
    if (!sameFile(before, after)) throw new FileChangedError(shown, before, after, "upload");
    return { bytes: length, blocks };
  } catch (err) {
    stop.abort();
    await Promise.allSettled(inFlight);
    throw err;
  } finally {
    await fh.close();
  }
};

export interface CommitStagedOptions {
  fileSize: number;
  blockSize: number;
  expected: ExpectedFile;
  /** Stat the file through an fd opened beneath a job root fd (see StageRangeOptions). */
  beneath?: SourceBeneath | undefined;
  /** Blob metadata (core's metadataForEntry). */
  metadata: Record<string, string>;
  abortSignal?: AbortSignal | undefined;
}

/**
 * Commits the block list of a file whose blocks were all staged (by any number of workers): the
 * file is stat'ed first, and a size or mtime other than `expected` is a FileChangedError with
 * nothing committed. Committing the same list again is harmless (same blocks, same metadata).
 * No whole-file Content-MD5 is set: no single worker saw every byte.
 */
export const commitStagedFile = async (
  container: BlobContainer,
  localPath: Buffer,
  name: string,
  options: CommitStagedOptions,
): Promise<{ blocks: number }> => {
  const shown = displayPath(localPath);
  const where: BlobOperationSubject = { path: shown, blobName: name, container: container.name };
  let now: FileSnapshot;
  if (options.beneath !== undefined) {
    const fh = await openRangeFile(localPath, where, options.beneath, options.expected);
    try {
      const st = await fh.stat({ bigint: true });
      now = { size: Number(st.size), mtimeNs: st.mtimeNs };
    } catch (err) {
      throw fsFailure("stat", where, err);
    } finally {
      await fh.close();
    }
  } else {
    try {
      const st = await lstat(localPath, { bigint: true });
      now = { size: Number(st.size), mtimeNs: st.mtimeNs };
    } catch (err) {
      throw fsFailure("stat", where, err);
    }
  }
  const listed = expectedSnapshot(options.expected);
  if (!sameFile(listed, now) || now.size !== options.fileSize)
    throw new FileChangedError(shown, listed, now, "upload");
  const ids = blockListFor(options.fileSize, options.blockSize);
  await container.commitBlockList(name, ids, {
    metadata: options.metadata,
    localPath: shown,
    ...(options.abortSignal ? { abortSignal: options.abortSignal } : {}),
  });
  return { blocks: ids.length };
};
