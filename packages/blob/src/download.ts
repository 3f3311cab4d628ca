import type { FileHandle } from "node:fs/promises";
import type { BlobDownloadResponseParsed } from "@azure/storage-blob";
import { displayPath } from "@hsmfleet/core";
import { Md5Stream } from "@hsmfleet/fs";
import type { BlobContainer } from "./container.js";
import { BlobOperationError, abortCause, fsFailure, type BlobOperationSubject } from "./errors.js";
import { BlobChangedError, BlobChecksumError, RangeChecksumError } from "./download-errors.js";
import { md5OfFile } from "./file-md5.js";
import type { MemoryBudget } from "./memory-budget.js";
import { GET_RANGE, WRITE, isConditionNotMet, processBudget } from "./download-common.js";
import type { DownloadRangeOptions, DownloadResult, RangeDownload } from "./download-common.js";
import { downloadSmallBlob, downloadSmallBlobWith } from "./small-download.js";
import type { SmallBlobWriter } from "./small-download.js";
import { directGetBlob } from "./direct-get.js";
import type { BodyListener } from "./socket-get.js";
import { RangeStreamWrite, finishStream, streamPieceBytes, writeAt } from "./range-write.js";
import { fileWriteLane } from "./write-lane.js";
import { processRangeBuffers } from "./range-buffers.js";
import type { DirectGetResult } from "./direct-get.js";
import {
  RANGE_CRC64_MAX_BYTES,
  RANGE_CRC64_TRIES,
  crc64Base64,
  noteRangeCrc64,
  rangeCrc64Support,
} from "./range-crc64.js";

export type { DownloadRangeOptions, DownloadResult, RangeDownload } from "./download-common.js";

const MiB = 1024 * 1024;

/** Bytes per ranged GET unless the caller says otherwise. */
export const DEFAULT_RANGE_SIZE_BYTES = 8 * MiB;
/** Ranged GETs in flight per file unless the caller says otherwise. */
export const DEFAULT_DOWNLOAD_CONCURRENCY = 8;

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

/**
 * One ranged GET into `buf[0, n)`, with its length checked. With `rangeCrc64` (direct transport,
 * n ≤ 4 MiB) the service is asked for the range's CRC64: returned when it sent one.
 */
const getRange = async (
  container: BlobContainer,
  name: string,
  where: BlobOperationSubject,
  state: EtagState,
  buf: Buffer,
  position: number,
  n: number,
  signal: AbortSignal,
  rangeCrc64: boolean,
  onBody?: BodyListener,
): Promise<bigint | undefined> => {
  const range = `bytes ${position}-${position + n - 1}`;
  const direct = container.direct;
  if (direct !== undefined) {
    let r: DirectGetResult;
    try {
      r = await directGetBlob(direct.transport, direct.address, name, {
        offset: position,
        count: n,
        ifMatch: state.ifMatch,
        into: n === buf.length ? buf : buf.subarray(0, n),
        abortSignal: signal,
        rangeCrc64,
        onBody,
      });
    } catch (err) {
      throw rangeFailure(where, state, err);
    }
    if (r.etag !== undefined) {
      if (state.etag === undefined) state.etag = r.etag;
      else if (r.etag !== state.etag) throw new BlobChangedError(where, state.etag, r.etag);
    }
    if (r.lengthMismatch) {
      throw new BlobOperationError(GET_RANGE, where, undefined, {
        detail: `${range}: the service sent ${r.contentLength ?? "no"} bytes, expected ${n} (range beyond the end of the blob?)`,
        retryable: false,
      });
    }
    return r.contentCrc64;
  }
  const client = container.client.getBlobClient(name);
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
  return undefined;
};

/** Whether ranges are checked by the service's CRC64 unless the caller says: HSMFLEET_RANGE_CRC64=0 turns it off. */
const rangeCrc64Default = (): boolean => process.env["HSMFLEET_RANGE_CRC64"] !== "0";

/** Whether a download from `container` asks for range CRC64s (direct transport not known to lack them). */
const useRangeCrc64 = (container: BlobContainer, options: DownloadRangeOptions): boolean => {
  const direct = container.direct;
  if (direct === undefined || options.md5 !== undefined) return false;
  if (!(options.rangeCrc64 ?? rangeCrc64Default())) return false;
  return rangeCrc64Support(direct.address) !== false;
};

/**
 * What errors name: the local path is made printable only when read (an error, a log), not for
 * every file that downloads fine.
 */
const subjectOf = (
  container: BlobContainer,
  name: string,
  localPath: Buffer,
): BlobOperationSubject => {
  let path: string | undefined;
  return {
    get path(): string {
      return (path ??= displayPath(localPath));
    },
    blobName: name,
    container: container.name,
  };
};

/**
 * A blob of `size` bytes (≤ one range) in one GET, its bytes handed to `write` (the caller's one
 * native job: MD5 check, write, attributes — fs smallFileJob) instead of a file handle. Undefined
 * when the blob has another size, or when `size` is 0 or over one range: take
 * downloadBlobToFile then.
 */
export const downloadSmallBlobTo = (
  container: BlobContainer,
  name: string,
  localPath: Buffer,
  size: number,
  write: SmallBlobWriter,
  options: DownloadRangeOptions = {},
): Promise<DownloadResult | undefined> => {
  if (size <= 0 || size > (options.rangeSizeBytes ?? DEFAULT_RANGE_SIZE_BYTES))
    return Promise.resolve(undefined);
  const where = subjectOf(container, name, localPath);
  return downloadSmallBlobWith(container, name, where, size, options, write);
};

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
): Promise<number> =>
  (await downloadRangeChecked(container, name, fh, localPath, offset, length, options)).bytes;

/**
 * downloadRange, and whether every byte was checked against the service's CRC64 of its range
 * (range-crc64.ts): unless `options.md5` is given or `options.rangeCrc64` is false (default: on,
 * HSMFLEET_RANGE_CRC64=0 turns it off), a download through the direct transport asks for each
 * range's CRC64 (ranges of at most 4 MiB then), computes the CRC64 of the received bytes in the
 * job that writes them (pwriteCrc64) and compares. A range that does not match is fetched and
 * written again, up to RANGE_CRC64_TRIES times, then the download fails with RangeChecksumError
 * (naming the path and the range). `crc64Verified` is false when some answer carried no CRC64
 * (an endpoint without the feature, e.g. Azurite: remembered per transport, later downloads do
 * not ask).
 */
export const downloadRangeChecked = async (
  container: BlobContainer,
  name: string,
  fh: FileHandle,
  localPath: Buffer,
  offset: number,
  length: number,
  options: DownloadRangeOptions = {},
): Promise<RangeDownload> => {
  const where = subjectOf(container, name, localPath);
  const crcMode = useRangeCrc64(container, options);
  const rangeSize = Math.min(
    options.rangeSizeBytes ?? DEFAULT_RANGE_SIZE_BYTES,
    crcMode ? RANGE_CRC64_MAX_BYTES : Number.MAX_SAFE_INTEGER,
  );
  const concurrency = options.concurrency ?? DEFAULT_DOWNLOAD_CONCURRENCY;
  const pieceBytes = container.direct !== undefined ? streamPieceBytes() : 0;
  checkCount("range size", rangeSize, 1);
  checkCount("download concurrency", concurrency, 1);
  checkCount("download offset", offset, 0);
  checkCount("download length", length, 0);
  const outer = options.abortSignal;
  if (outer?.aborted) throw new BlobOperationError(GET_RANGE, where, abortCause(outer));
  if (length === 0) return { bytes: 0, crc64Verified: false }; // nothing checked
  const budget = options.budget ?? processBudget;
  const stop = new AbortController();
  const signal = outer ? AbortSignal.any([outer, stop.signal]) : stop.signal;
  const state: EtagState = { ifMatch: options.etag, etag: options.etag };
  const md5 = options.md5;
  // With an MD5, ranges are written (and hashed) in file order: each waits for the one before.
  let previousWrite: Promise<void> = Promise.resolve();
  // Full-size range buffers come from, and go back to, the process's pool (range-buffers.ts).
  const buffers = options.buffers ?? processRangeBuffers;
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown): void => {
    failure ??= { error };
    stop.abort();
  };
  let written = 0;
  let unchecked = 0;
  const end = offset + length;
  // The file's writes, one job at a time (write-lane.ts), shared with other downloads of the same
  // file (its other chunks): its ranges still download in parallel.
  const lease = await fileWriteLane(fh);
  const lane = lease.lane;
  /** One range: GET, write (hashed or checksummed), and with CRC64s the comparison (and retries). */
  const fetchAndWrite = async (
    buf: Buffer,
    at: number,
    n: number,
    before: Promise<void>,
  ): Promise<void> => {
    for (let tryNo = 1; ; tryNo++) {
      // With range CRC64s the range is written as it arrives (range-stream-write.ts).
      const stream =
        crcMode && pieceBytes > 0
          ? new RangeStreamWrite(fh.fd, buf, n, at, pieceBytes, lane)
          : undefined;
      let expected: bigint | undefined;
      try {
        expected = await getRange(
          container,
          name,
          where,
          state,
          buf,
          at,
          n,
          signal,
          crcMode,
          stream,
        );
      } catch (err) {
        await stream?.settled(); // no piece may still read the buffer when it is reused
        throw err;
      }
      if (crcMode) noteRangeCrc64(container.direct!.address, expected !== undefined);
      if (md5) await before;
      const actual =
        stream === undefined
          ? await writeAt(fh, buf, n, at, where, signal, md5, crcMode, lane)
          : await finishStream(stream, where, signal);
      if (!crcMode) return;
      if (expected === undefined) {
        unchecked++;
        return;
      }
      if (actual === expected) return;
      if (tryNo >= RANGE_CRC64_TRIES) {
        throw new RangeChecksumError(
          where,
          at,
          n,
          crc64Base64(expected),
          crc64Base64(actual ?? 0n),
          tryNo,
        );
      }
    }
  };
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
      const before = previousWrite;
      let markWritten!: () => void;
      const mine = new Promise<void>((resolveWrite) => (markWritten = resolveWrite));
      if (md5) previousWrite = mine;
      const task: Promise<void> = (async () => {
        const full = n === rangeSize;
        const buf = full ? buffers.take(n) : Buffer.allocUnsafeSlow(n);
        try {
          await fetchAndWrite(buf, at, n, before);
          // Only a range that finished cleanly hands its buffer on: nothing reads or writes it now.
          if (full) buffers.release(buf);
        } finally {
          markWritten();
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
    return { bytes: written, crc64Verified: crcMode && unchecked === 0 };
  } catch (err) {
    stop.abort();
    await Promise.allSettled(inFlight);
    throw err;
  } finally {
    lease.release();
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
  const actual = await md5OfFile(fh, size, where, options.abortSignal);
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
 * Content-MD5 (If-Match `options.etag` when given), downloads all of it with downloadRangeChecked
 * under If-Match on that ETag (nothing is preallocated: sparse-friendly) and trims a longer file
 * to the blob's size. Integrity: every range checked against the service's CRC64 of it where the
 * endpoint computes one (Azure; `crc64Verified`, no MD5), else the blob's Content-MD5, hashed as
 * the ranges are written (or, by the download that found out the endpoint has no range CRC64s, by
 * reading the file back). An MD5 mismatch truncates the file to 0 bytes and throws
 * BlobChecksumError; a range CRC64 mismatch throws RangeChecksumError.
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
  // Checked by the service's CRC64 of each range where the endpoint has it (no MD5 at all);
  // else, with a Content-MD5, every range is hashed in the job that writes it (in file order).
  const crcMode = useRangeCrc64(container, options);
  const hash = md5 !== undefined && !crcMode ? new Md5Stream() : undefined;
  const got = await downloadRangeChecked(container, name, fh, localPath, 0, size, {
    ...options,
    etag,
    ...(hash ? { md5: hash } : {}),
  });
  const bytes = got.bytes;
  // An existing file opened without truncation may be longer than the blob.
  try {
    const st = await fh.stat();
    if (st.size !== size) await fh.truncate(size);
  } catch (err) {
    throw fsFailure(WRITE, where, err);
  }
  if (got.crc64Verified) return { bytes, md5Verified: false, crc64Verified: true, etag };
  if (md5 === undefined) return { bytes, md5Verified: false, etag };
  // The endpoint sent no range CRC64 (found out by this download): the file is read back once.
  const actual = hash !== undefined ? hash.digest() : await md5OfFile(fh, size, where, signal);
  if (!actual.equals(md5)) {
    let truncateError: unknown;
    try {
      await fh.truncate(0);
    } catch (err) {
      truncateError = err ?? new Error("truncate failed");
    }
    throw new BlobChecksumError(where, md5, actual, truncateError);
  }
  return { bytes, md5Verified: true, etag };
};
