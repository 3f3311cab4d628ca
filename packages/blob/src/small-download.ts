import type { FileHandle } from "node:fs/promises";
import type { BlobDownloadResponseParsed } from "@azure/storage-blob";
import { FsOperationError } from "@hsmfleet/core";
import { UnsafePathError, writeWholeFile } from "@hsmfleet/fs";
import type { BlobContainer } from "./container.js";
import { BlobOperationError, abortCause, fsFailure, type BlobOperationSubject } from "./errors.js";
import { BlobChangedError, BlobChecksumError } from "./download-errors.js";
import { directGetBlob } from "./direct-get.js";
import type { DirectGetResult } from "./direct-get.js";
import { GET_RANGE, WRITE, isConditionNotMet, processBudget } from "./download-common.js";
import type { DownloadRangeOptions, DownloadResult } from "./download-common.js";

/**
 * The whole blob in one GET into a new `size`-byte buffer, with its ETag and stored Content-MD5:
 * direct (direct-get.ts) when the container has a direct transport, else through the SDK.
 * Undefined when the blob is not `size` bytes long (or the answer has no ETag).
 */
const getSmallBlob = async (
  container: BlobContainer,
  name: string,
  where: BlobOperationSubject,
  size: number,
  ifMatch: string | undefined,
  signal: AbortSignal,
): Promise<{ buf: Buffer; etag: string; stored: Uint8Array | undefined } | undefined> => {
  const failure = (err: unknown): Error =>
    ifMatch !== undefined && isConditionNotMet(err)
      ? new BlobChangedError(where, ifMatch, undefined, err)
      : new BlobOperationError(GET_RANGE, where, err);
  const direct = container.direct;
  if (direct !== undefined) {
    const buf = Buffer.allocUnsafe(size);
    let r: DirectGetResult;
    try {
      r = await directGetBlob(direct.transport, direct.address, name, {
        ifMatch,
        into: buf,
        abortSignal: signal,
      });
    } catch (err) {
      throw failure(err);
    }
    if (r.lengthMismatch || r.etag === undefined) return undefined;
    return { buf, etag: r.etag, stored: r.contentMD5 ?? r.blobContentMD5 };
  }
  let res: BlobDownloadResponseParsed;
  try {
    res = await container.client.getBlobClient(name).download(0, undefined, {
      abortSignal: signal,
      ...(ifMatch !== undefined ? { conditions: { ifMatch } } : {}),
    });
  } catch (err) {
    throw failure(err);
  }
  const body = res.readableStreamBody;
  if (res.contentLength !== size || body === undefined || res.etag === undefined) {
    body?.destroy();
    return undefined;
  }
  const buf = Buffer.allocUnsafe(size);
  let got = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (got + chunk.length > size) throw new Error(`more than the ${size} bytes announced`);
      chunk.copy(buf, got);
      got += chunk.length;
    }
  } catch (err) {
    body.destroy();
    throw new BlobOperationError(GET_RANGE, where, err, { retryable: true });
  }
  if (got !== size) {
    throw new BlobOperationError(GET_RANGE, where, undefined, {
      detail: `received ${got} of ${size} bytes`,
      retryable: true,
    });
  }
  return { buf, etag: res.etag, stored: res.contentMD5 ?? res.blobContentMD5 };
};

/**
 * What a SmallBlobWriter did with the data: `md5Mismatch` when the data's MD5 (`actual`) was not
 * the stored Content-MD5 — in which case it must have written nothing.
 */
export interface SmallBlobWritten {
  md5Mismatch: boolean;
  /** The data's MD5 when the writer computed it. */
  actual?: Buffer | undefined;
  /** On a mismatch: the data was checked first and not written (else the file was truncated). */
  notWritten?: boolean;
  /** On a mismatch: why the written file could not be truncated to 0 bytes. */
  truncateError?: unknown;
}

/**
 * Puts a small blob's bytes where they belong: `expectMd5` (the stored Content-MD5, when the blob
 * has one) must be checked against the data — by the writer, in the same job as the write.
 */
export type SmallBlobWriter = (
  data: Buffer,
  expectMd5: Uint8Array | undefined,
) => Promise<SmallBlobWritten>;

/**
 * One GET for a blob expected to be `size` bytes, its bytes handed to `write` (a native job that
 * checks the MD5, writes, sets attributes: fs smallFileJob), in the order of every transfer:
 * memory from the budget, then the request. Undefined when the blob turns out to have another
 * size (the caller takes the general path). A write failure is a BlobOperationError "write"
 * naming the local file; an MD5 mismatch a BlobChecksumError.
 */
export const downloadSmallBlobWith = async (
  container: BlobContainer,
  name: string,
  where: BlobOperationSubject,
  size: number,
  options: DownloadRangeOptions,
  write: SmallBlobWriter,
): Promise<DownloadResult | undefined> => {
  const signal = options.abortSignal ?? new AbortController().signal;
  const budget = options.budget ?? processBudget;
  if (signal.aborted || !budget.tryAcquire(size)) {
    try {
      await budget.acquire(size, signal);
    } catch (err) {
      throw new BlobOperationError(GET_RANGE, where, signal.aborted ? abortCause(signal) : err);
    }
  }
  try {
    const got = await getSmallBlob(container, name, where, size, options.etag, signal);
    if (got === undefined) return undefined;
    const { buf, stored } = got;
    const checked = stored !== undefined && stored.length > 0;
    if (signal.aborted) throw new BlobOperationError(WRITE, where, abortCause(signal));
    let written: SmallBlobWritten;
    try {
      written = await write(buf, checked ? stored : undefined);
    } catch (err) {
      // A failure after the data (owner, mode, times, xattrs: the writer's later steps) keeps its
      // own operation; the write itself is the download's "write".
      // A symlink in the way stays an UnsafePathError.
      if (err instanceof FsOperationError && err.operation !== WRITE) throw err;
      if (err instanceof UnsafePathError) throw err;
      throw fsFailure(WRITE, where, err);
    }
    if (written.md5Mismatch) {
      throw new BlobChecksumError(
        where,
        Buffer.from(stored!),
        written.actual ?? Buffer.alloc(0),
        written.truncateError,
        written.notWritten ?? false,
      );
    }
    options.onProgress?.(size);
    return { bytes: size, md5Verified: checked, etag: got.etag };
  } finally {
    budget.release(size);
  }
};

/**
 * One GET for a blob expected to be `size` bytes: written at offset 0 of `fh`, the file trimmed
 * to it, the stored Content-MD5 (sent with a whole-blob GET) compared in the same threadpool job
 * (native/writehash.c). Undefined when the blob turns out to have another size (the caller takes
 * the general path).
 */
export const downloadSmallBlob = (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  where: BlobOperationSubject,
  size: number,
  options: DownloadRangeOptions,
): Promise<DownloadResult | undefined> =>
  downloadSmallBlobWith(container, name, where, size, options, async (data, expectMd5) => {
    // One threadpool job: write at 0 (zero blocks left as holes, as writeAt), cut to the size,
    // MD5 of the data.
    const actual = await writeWholeFile(fh.fd, data, {
      md5: expectMd5 !== undefined,
      sparse: true,
    });
    if (expectMd5 === undefined || actual === undefined || actual.equals(expectMd5)) {
      return { md5Mismatch: false, actual };
    }
    let truncateError: unknown;
    try {
      await fh.truncate(0);
    } catch (err) {
      truncateError = err ?? new Error("truncate failed");
    }
    return { md5Mismatch: true, actual, truncateError };
  });
