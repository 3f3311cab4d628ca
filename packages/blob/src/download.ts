import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import type { BlobClient, BlobDownloadResponseParsed } from "@azure/storage-blob";
import { HsmfleetError, displayPath, errorMessage } from "@hsmfleet/core";
import type { BlobContainer } from "./container.js";
import {
  BlobOperationError,
  abortCause,
  fsFailure,
  httpErrorInfo,
  type BlobOperation,
  type BlobOperationSubject,
} from "./errors.js";
import { MemoryBudget } from "./memory-budget.js";

const MiB = 1024 * 1024;

/** Bytes per ranged GET unless the caller says otherwise. */
export const DEFAULT_RANGE_SIZE_BYTES = 8 * MiB;
/** Ranged GETs in flight per file unless the caller says otherwise. */
export const DEFAULT_DOWNLOAD_CONCURRENCY = 8;
/** Read size of the MD5 verification pass (less when the memory budget is below it, ≥ 1 MiB). */
const VERIFY_READ_BYTES = 4 * MiB;

// The BlobOperation union (errors.ts) does not list the download operations yet.
const GET_RANGE: BlobOperation = "get-blob-range";
const WRITE: BlobOperation = "write";

/**
 * Budget of downloads that are not given one: shared by the whole process (separate from the
 * upload one, which upload.ts keeps to itself).
 */
const processBudget = new MemoryBudget();

export interface DownloadRangeOptions {
  /** Bytes per ranged GET. Default 8 MiB. */
  rangeSizeBytes?: number;
  /** GETs in flight for this file. Default 8. */
  concurrency?: number;
  /** Shared per-worker memory budget for range buffers (default: a process-wide 512 MiB budget). */
  budget?: MemoryBudget;
  abortSignal?: AbortSignal;
  /** Called with the byte count of each range once it is written. */
  onProgress?: (bytes: number) => void;
  /**
   * If given, the blob's ETag must match at every GET (If-Match): a blob replaced during the
   * download fails with BlobChangedError instead of mixing versions. Without it, the ETags of the
   * responses must agree with each other.
   */
  etag?: string;
  /**
   * downloadBlobToFile: the size the caller expects (from a listing or a stub). When it fits in
   * one range, the blob is fetched with one GET (no separate Get Blob Properties): the response
   * carries the ETag and the stored Content-MD5. A blob of another size takes the general path.
   */
  expectedSize?: number;
}

export interface DownloadResult {
  bytes: number;
  /** The blob had a Content-MD5 and the file's MD5 matched it. */
  md5Verified: boolean;
  etag: string;
}

/**
 * The blob was replaced (ETag changed) while it was being downloaded; the local bytes may mix
 * versions. Retryable: a new download of the new version can succeed.
 */
export class BlobChangedError extends HsmfleetError {
  readonly blobName: string | undefined;
  readonly container: string | undefined;
  readonly path: string | undefined;
  /** The ETag the download started with (or was given). */
  readonly expectedEtag: string | undefined;
  /** The ETag seen later, when the service told it (not on a 412). */
  readonly actualEtag: string | undefined;
  constructor(
    where: BlobOperationSubject,
    expectedEtag: string | undefined,
    actualEtag: string | undefined,
    cause?: unknown,
  ) {
    const etags =
      expectedEtag !== undefined && actualEtag !== undefined
        ? ` (ETag ${expectedEtag} → ${actualEtag})`
        : expectedEtag !== undefined
          ? ` (ETag ${expectedEtag} no longer matches)`
          : "";
    super(
      `blob "${where.blobName}" in container "${where.container}" changed while being downloaded` +
        `${where.path !== undefined ? ` to ${where.path}` : ""}${etags}; ` +
        "the local copy may mix versions and must be downloaded again",
      { cause, retryable: true },
    );
    this.name = "BlobChangedError";
    this.blobName = where.blobName;
    this.container = where.container;
    this.path = where.path;
    this.expectedEtag = expectedEtag;
    this.actualEtag = actualEtag;
  }
}

/**
 * The downloaded file's MD5 differs from the blob's Content-MD5. The file was truncated to 0 bytes
 * (`truncated`) so that no corrupt copy is left behind. Retryable: the damage may have been on the
 * way.
 */
export class BlobChecksumError extends HsmfleetError {
  readonly blobName: string | undefined;
  readonly container: string | undefined;
  readonly path: string | undefined;
  /** Base64, as Azure shows Content-MD5. */
  readonly expectedMd5: string;
  readonly actualMd5: string;
  /** Whether the local file was truncated to 0 bytes. */
  readonly truncated: boolean;
  constructor(
    where: BlobOperationSubject,
    expected: Buffer,
    actual: Buffer,
    truncateError: unknown,
  ) {
    const truncated = truncateError === undefined;
    super(
      `download blob "${where.blobName}" in container "${where.container}" → ${where.path}: ` +
        `MD5 of the written file ${actual.toString("base64")} does not match the blob's ` +
        `Content-MD5 ${expected.toString("base64")}; ` +
        (truncated
          ? "the file was truncated to 0 bytes"
          : `the file could NOT be truncated (${errorMessage(truncateError)}) and is corrupt`),
      { retryable: true, cause: truncateError },
    );
    this.name = "BlobChecksumError";
    this.blobName = where.blobName;
    this.container = where.container;
    this.path = where.path;
    this.expectedMd5 = expected.toString("base64");
    this.actualMd5 = actual.toString("base64");
    this.truncated = truncated;
  }
}

/** 412 of an If-Match (not of a lease condition). */
const isConditionNotMet = (err: unknown): boolean => {
  const info = httpErrorInfo(err);
  return info.statusCode === 412 && (info.code === undefined || info.code === "ConditionNotMet");
};

const checkCount = (what: string, n: number, min: number): void => {
  if (!Number.isSafeInteger(n) || n < min) {
    throw new RangeError(`${what} must be an integer ≥ ${min}, got ${n}`);
  }
};

interface EtagState {
  /** Given by the caller: sent as If-Match. */
  readonly ifMatch: string | undefined;
  /** The ETag every response must carry (the given one, else the first one seen). */
  etag: string | undefined;
}

const rangeFailure = (where: BlobOperationSubject, state: EtagState, err: unknown): Error => {
  if (err instanceof BlobOperationError || err instanceof BlobChangedError) return err;
  if (isConditionNotMet(err)) return new BlobChangedError(where, state.etag, undefined, err);
  return new BlobOperationError(GET_RANGE, where, err);
};

/** One ranged GET into `buf[0, n)`, with its length checked. */
const getRange = async (
  client: BlobClient,
  where: BlobOperationSubject,
  state: EtagState,
  buf: Buffer,
  position: number,
  n: number,
  signal: AbortSignal,
): Promise<void> => {
  const range = `bytes ${position}-${position + n - 1}`;
  let res: BlobDownloadResponseParsed;
  try {
    res = await client.download(position, n, {
      abortSignal: signal,
      ...(state.ifMatch !== undefined ? { conditions: { ifMatch: state.ifMatch } } : {}),
    });
  } catch (err) {
    throw rangeFailure(where, state, err);
  }
  const body = res.readableStreamBody;
  try {
    if (res.etag !== undefined) {
      if (state.etag === undefined) state.etag = res.etag;
      else if (res.etag !== state.etag) throw new BlobChangedError(where, state.etag, res.etag);
    }
    if (res.contentLength !== n) {
      throw new BlobOperationError(GET_RANGE, where, undefined, {
        detail: `${range}: the service sent ${res.contentLength ?? "no"} bytes, expected ${n} (range beyond the end of the blob?)`,
        retryable: false,
      });
    }
    if (body === undefined) {
      throw new BlobOperationError(GET_RANGE, where, undefined, {
        detail: `${range}: no response body`,
        retryable: true,
      });
    }
  } catch (err) {
    body?.destroy();
    throw err;
  }
  let got = 0;
  let overflow = false;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (got + chunk.length > n) {
        overflow = true;
        break;
      }
      chunk.copy(buf, got);
      got += chunk.length;
    }
  } catch (err) {
    body.destroy();
    throw rangeFailure(where, state, err);
  }
  if (overflow || got !== n) {
    throw new BlobOperationError(GET_RANGE, where, undefined, {
      detail: `${range}: received ${overflow ? "more than" : got} of ${n} bytes`,
      retryable: true,
    });
  }
};

/**
 * Sparse writes: a file-system block of zeros is not written, so it stays a hole (the targets
 * are released stubs or new files: holes read as zeros). The file's size is set apart from the
 * writes (the stub's size, or a truncate after the last range).
 */
const SPARSE_BLOCK = 4096;
const ZEROS = Buffer.alloc(SPARSE_BLOCK);

const isZero = (buf: Buffer, start: number, end: number): boolean =>
  buf.compare(ZEROS, 0, end - start, start, end) === 0;

/**
 * Positional write of `buf[0, n)` at `position`: the runs between zero blocks (aligned on the
 * file's SPARSE_BLOCK boundaries), each written whole.
 */
const writeAt = async (
  fh: FileHandle,
  buf: Buffer,
  n: number,
  position: number,
  where: BlobOperationSubject,
  signal: AbortSignal,
): Promise<void> => {
  let runStart = -1;
  for (let at = 0; at < n;) {
    const end = Math.min(n, at + SPARSE_BLOCK - ((position + at) % SPARSE_BLOCK));
    if (isZero(buf, at, end)) {
      if (runStart >= 0) await writeRun(fh, buf, runStart, at, position, where, signal);
      runStart = -1;
    } else if (runStart < 0) runStart = at;
    at = end;
  }
  if (runStart >= 0) await writeRun(fh, buf, runStart, n, position, where, signal);
};

const writeRun = async (
  fh: FileHandle,
  buf: Buffer,
  from: number,
  to: number,
  position: number,
  where: BlobOperationSubject,
  signal: AbortSignal,
): Promise<void> => {
  let done = from;
  const n = to;
  while (done < n) {
    if (signal.aborted) throw new BlobOperationError(WRITE, where, abortCause(signal));
    let written: number;
    try {
      ({ bytesWritten: written } = await fh.write(buf, done, n - done, position + done));
    } catch (err) {
      throw fsFailure(WRITE, where, err);
    }
    if (written <= 0) {
      throw new BlobOperationError(WRITE, where, undefined, {
        detail: `wrote nothing at offset ${position + done}`,
        retryable: false,
      });
    }
    done += written;
  }
};

const subjectOf = (
  container: BlobContainer,
  name: string,
  localPath: Buffer,
): BlobOperationSubject => ({
  path: displayPath(localPath),
  blobName: name,
  container: container.name,
});

/**
 * Downloads bytes [offset, offset+length) of blob `name` into the open file `fh` at the same
 * offsets (positional writes), in ranges of rangeSizeBytes, up to `concurrency` GETs in flight,
 * each range buffer acquired from the memory budget before its GET and released after its write.
 * Each response's length is checked; retries (also of a broken body) are the SDK's. With `etag`
 * every GET carries If-Match; without it the responses' ETags must agree. A change is a
 * BlobChangedError; other failures are BlobOperationError ("get-blob-range" or "write") naming
 * the blob, the path and the cause, with `retryable`. Bytes outside the range are not touched
 * (a fresh file stays sparse there). Returns the bytes written (= length).
 */
export const downloadRange = async (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  localPath: Buffer,
  offset: number,
  length: number,
  options: DownloadRangeOptions = {},
): Promise<number> => {
  const where = subjectOf(container, name, localPath);
  const rangeSize = options.rangeSizeBytes ?? DEFAULT_RANGE_SIZE_BYTES;
  const concurrency = options.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY;
  checkCount("range size", rangeSize, 1);
  checkCount("download concurrency", concurrency, 1);
  checkCount("download offset", offset, 0);
  checkCount("download length", length, 0);
  const outer = options.abortSignal;
  if (outer?.aborted) throw new BlobOperationError(GET_RANGE, where, abortCause(outer));
  if (length === 0) return 0;
  const budget = options.budget ?? processBudget;
  const client = container.client.getBlobClient(name);
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  const state: EtagState = { ifMatch: options.etag, etag: options.etag };
  // Full-size range buffers are reused within this download (at most `concurrency` of them).
  const spare: Buffer[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort();
  };
  let written = 0;
  const end = offset + length;
  try {
    for (let position = offset; position < end && failure === undefined; position += rangeSize) {
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
      if (signal.aborted) throw new BlobOperationError(GET_RANGE, where, abortCause(signal));
      const n = Math.min(rangeSize, end - position);
      try {
        await budget.acquire(n, signal);
      } catch (err) {
        if (failure !== undefined) break; // a range failed while this one waited for memory
        throw new BlobOperationError(GET_RANGE, where, signal.aborted ? abortCause(signal) : err);
      }
      const at = position;
      const task: Promise<void> = (async () => {
        const full = n === rangeSize;
        const buf = (full ? spare.pop() : undefined) ?? Buffer.allocUnsafeSlow(n);
        try {
          await getRange(client, where, state, buf, at, n, signal);
          await writeAt(fh, buf, n, at, where, signal);
        } finally {
          if (full) spare.push(buf);
          budget.release(n);
        }
        written += n;
        options.onProgress?.(n);
      })()
        .catch(fail)
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    }
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure.error;
    if (outer?.aborted) throw new BlobOperationError(GET_RANGE, where, abortCause(outer));
    return written;
  } catch (err) {
    stop.abort();
    await Promise.allSettled(inFlight);
    throw err;
  }
};

/** MD5 of the file's first `size` bytes, read sequentially in large reads (budgeted buffer). */
const md5OfFile = async (
  fh: FileHandle,
  size: number,
  where: BlobOperationSubject,
  budget: MemoryBudget,
  signal: AbortSignal | undefined,
): Promise<Buffer> => {
  const hash = createHash("md5");
  if (size === 0) return hash.digest();
  // Large reads, but no larger than a small budget allows (never below 1 MiB).
  const chunk = Math.min(size, VERIFY_READ_BYTES, Math.max(MiB, budget.limitBytes));
  try {
    await budget.acquire(chunk, signal);
  } catch (err) {
    throw new BlobOperationError("read", where, signal?.aborted ? abortCause(signal) : err);
  }
  try {
    const buf = Buffer.allocUnsafeSlow(chunk);
    let position = 0;
    while (position < size) {
      if (signal?.aborted) throw new BlobOperationError("read", where, abortCause(signal));
      let n: number;
      try {
        ({ bytesRead: n } = await fh.read(buf, 0, Math.min(chunk, size - position), position));
      } catch (err) {
        throw fsFailure("read", where, err);
      }
      if (n === 0) break; // shorter than the blob: the digest will not match
      hash.update(buf.subarray(0, n));
      position += n;
    }
  } finally {
    budget.release(chunk);
  }
  return hash.digest();
};

/**
 * One GET for a blob expected to be `size` bytes: written at offset 0, the file trimmed to it, the
 * stored Content-MD5 (sent with a whole-blob GET) compared in memory. Undefined when the blob turns
 * out to have another size (the caller takes the general path).
 */
const downloadSmallBlob = async (
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
  let res: BlobDownloadResponseParsed;
  try {
    res = await container.client.getBlobClient(name).download(0, undefined, {
      abortSignal: signal,
      ...(options.etag !== undefined ? { conditions: { ifMatch: options.etag } } : {}),
    });
  } catch (err) {
    budget.release(size);
    if (options.etag !== undefined && isConditionNotMet(err)) {
      throw new BlobChangedError(where, options.etag, undefined, err);
    }
    throw new BlobOperationError(GET_RANGE, where, err);
  }
  const body = res.readableStreamBody;
  if (res.contentLength !== size || body === undefined || res.etag === undefined) {
    budget.release(size);
    body?.destroy();
    return undefined;
  }
  try {
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
    await writeAt(fh, buf, size, 0, where, signal);
    try {
      const st = await fh.stat();
      if (st.size !== size) await fh.truncate(size);
    } catch (err) {
      throw fsFailure(WRITE, where, err);
    }
    options.onProgress?.(size);
    const stored = res.contentMD5 ?? res.blobContentMD5;
    if (stored === undefined || stored.length === 0) {
      return { bytes: size, md5Verified: false, etag: res.etag };
    }
    const md5 = Buffer.from(stored);
    const actual = createHash("md5").update(buf).digest();
    if (!actual.equals(md5)) {
      let truncateError: unknown;
      try {
        await fh.truncate(0);
      } catch (err) {
        truncateError = err ?? new Error("truncate failed");
      }
      throw new BlobChecksumError(where, md5, actual, truncateError);
    }
    return { bytes: size, md5Verified: true, etag: res.etag };
  } finally {
    budget.release(size);
  }
};

/**
 * After a download written by several workers (chunks): the file's MD5 against the blob's
 * Content-MD5. A mismatch truncates the file to 0 bytes and throws BlobChecksumError.
 */
export const verifyFileMd5 = async (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  localPath: Buffer,
  size: number,
  md5: Buffer,
  options: { budget?: MemoryBudget; abortSignal?: AbortSignal } = {},
): Promise<void> => {
  const where = subjectOf(container, name, localPath);
  const actual = await md5OfFile(
    fh,
    size,
    where,
    options.budget ?? processBudget,
    options.abortSignal,
  );
  if (actual.equals(md5)) return;
  let truncateError: unknown;
  try {
    await fh.truncate(0);
  } catch (err) {
    truncateError = err ?? new Error("truncate failed");
  }
  throw new BlobChecksumError(where, md5, actual, truncateError);
};

/**
 * Whole blob → open file (opened for reading and writing): gets the blob's size, ETag and
 * Content-MD5 (If-Match `options.etag` when given), downloads all of it with downloadRange under
 * If-Match on that ETag (nothing is preallocated: sparse-friendly), trims a longer file to the
 * blob's size, then, when the blob has a Content-MD5, re-reads the file sequentially (4 MiB reads)
 * and compares. A mismatch truncates the file to 0 bytes and throws BlobChecksumError.
 */
export const downloadBlobToFile = async (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  localPath: Buffer,
  options: DownloadRangeOptions = {},
): Promise<DownloadResult> => {
  const where = subjectOf(container, name, localPath);
  const signal = options.abortSignal;
  const expected = options.expectedSize;
  if (
    expected !== undefined &&
    expected > 0 &&
    expected <= (options.rangeSizeBytes ?? DEFAULT_RANGE_SIZE_BYTES)
  ) {
    const small = await downloadSmallBlob(container, name, fh, where, expected, options);
    if (small) return small;
  }
  if (signal?.aborted) throw new BlobOperationError("get-properties", where, abortCause(signal));
  let size: number;
  let etag: string | undefined;
  let md5: Buffer | undefined;
  try {
    const p = await container.client.getBlobClient(name).getProperties({
      ...(signal ? { abortSignal: signal } : {}),
      ...(options.etag !== undefined ? { conditions: { ifMatch: options.etag } } : {}),
    });
    size = p.contentLength ?? 0;
    etag = p.etag;
    if (p.contentMD5 !== undefined && p.contentMD5.length > 0) md5 = Buffer.from(p.contentMD5);
  } catch (err) {
    if (options.etag !== undefined && isConditionNotMet(err)) {
      throw new BlobChangedError(where, options.etag, undefined, err);
    }
    throw new BlobOperationError("get-properties", where, err);
  }
  if (etag === undefined) {
    throw new BlobOperationError("get-properties", where, undefined, {
      detail: "the service returned no ETag",
      retryable: true,
    });
  }
  const bytes = await downloadRange(container, name, fh, localPath, 0, size, { ...options, etag });
  // An existing file opened without truncation may be longer than the blob.
  try {
    const st = await fh.stat();
    if (st.size !== size) await fh.truncate(size);
  } catch (err) {
    throw fsFailure(WRITE, where, err);
  }
  if (md5 === undefined) return { bytes, md5Verified: false, etag };
  await verifyFileMd5(container, name, fh, localPath, size, md5, {
    ...(options.budget ? { budget: options.budget } : {}),
    ...(signal ? { abortSignal: signal } : {}),
  });
  return { bytes, md5Verified: true, etag };
};
