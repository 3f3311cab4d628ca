import type { FileHandle } from "node:fs/promises";
import type { BlobDownloadResponseParsed } from "@azure/storage-blob";
import { writeWholeFile } from "@hsmfleet/fs";
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
 * One GET for a blob expected to be `size` bytes: written at offset 0, the file trimmed to it, the
 * stored Content-MD5 (sent with a whole-blob GET) compared in memory. Undefined when the blob turns
 * out to have another size (the caller takes the general path).
 */
export const downloadSmallBlob = async (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  where: BlobOperationSubject,
  size: number,
  options: DownloadRangeOptions,
): Promise<DownloadResult | undefined> => {
  const signal = options.abortSignal ?? new AbortController().signal;
  const budget = options.budget ?? processBudget;
  // Memory first, then the request: the same order as every other transfer (budget, then a
  // request slot), so a response never holds a slot while it waits for memory.
  try {
    await budget.acquire(size, signal);
  } catch (err) {
    throw new BlobOperationError(GET_RANGE, where, signal.aborted ? abortCause(signal) : err);
  }
  let got: { buf: Buffer; etag: string; stored: Uint8Array | undefined } | undefined;
  try {
    got = await getSmallBlob(container, name, where, size, options.etag, signal);
  } catch (err) {
    budget.release(size);
    throw err;
  }
  if (got === undefined) {
    budget.release(size);
    return undefined;
  }
  try {
    const { buf, stored } = got;
    const checked = stored !== undefined && stored.length > 0;
    if (signal.aborted) throw new BlobOperationError(WRITE, where, abortCause(signal));
    // One threadpool job: write at 0 (zero blocks left as holes, as writeAt), cut to the size,
    // MD5 of the data.
    let actual: Buffer | undefined;
    try {
      actual = await writeWholeFile(fh.fd, buf, { md5: checked, sparse: true });
    } catch (err) {
      throw fsFailure(WRITE, where, err);
    }
    options.onProgress?.(size);
    if (!checked || actual === undefined) {
      return { bytes: size, md5Verified: false, etag: got.etag };
    }
    const md5 = Buffer.from(stored);
    if (!actual.equals(md5)) {
      let truncateError: unknown;
      try {
        await fh.truncate(0);
      } catch (err) {
        truncateError = err ?? new Error("truncate failed");
      }
      throw new BlobChecksumError(where, md5, actual, truncateError);
    }
    return { bytes: size, md5Verified: true, etag: got.etag };
  } finally {
    budget.release(size);
  }
};
