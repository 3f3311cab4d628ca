import type { Md5Stream } from "@hsmfleet/fs";
import { httpErrorInfo, type BlobOperation } from "./errors.js";
import { MemoryBudget } from "./memory-budget.js";
import type { RangeBufferPool } from "./range-buffers.js";

// The BlobOperation union (errors.ts) does not list the download operations yet.
export const GET_RANGE: BlobOperation = "get-blob-range";
export const WRITE: BlobOperation = "write";

/**
 * Budget of downloads that are not given one: shared by the whole process (separate from the
 * upload one, which upload.ts keeps to itself).
 */
export const processBudget = new MemoryBudget();

export interface DownloadRangeOptions {
  /** Bytes per ranged GET. Default 8 MiB. */
  rangeSizeBytes?: number;
  /** GETs in flight for this file. Default 8. */
  concurrency?: number;
  /** Shared per-worker memory budget for range buffers (default: a process-wide 512 MiB budget). */
  budget?: MemoryBudget;
  /**
   * Where full-size range buffers come from and go back to once their range finished cleanly.
   * Default: the process's pool (range-buffers.ts processRangeBuffers).
   */
  buffers?: RangeBufferPool;
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
  /**
   * downloadRange: an MD5 fed with the range's bytes in file order, each range hashed in the same
   * native threadpool job that writes it (Md5Stream.pwriteAndHash). It must have been fed exactly
   * the bytes before `offset`. Default: none (ranges are written as they arrive).
   */
  md5?: Md5Stream;
  /**
   * Ask the service for each range's CRC64 (x-ms-range-get-content-crc64; direct transport only,
   * ranges of at most 4 MiB) and check every range against it (range-crc64.ts). Ignored with
   * `md5`. Default: on, unless HSMFLEET_RANGE_CRC64=0.
   */
  rangeCrc64?: boolean;
}

/** What downloadRangeChecked did. */
export interface RangeDownload {
  /** Bytes written (= the length asked for). */
  bytes: number;
  /** Every range was checked against the service's CRC64 of it (and matched). */
  crc64Verified: boolean;
}

export interface DownloadResult {
  bytes: number;
  /** The blob had a Content-MD5 and the file's MD5 matched it. */
  md5Verified: boolean;
  /**
   * Every range was checked against the service's CRC64 of it (x-ms-range-get-content-crc64);
   * the Content-MD5 was then not computed. Absent: false.
   */
  crc64Verified?: boolean;
  etag: string;
}

/** 412 of an If-Match (not of a lease condition). */
export const isConditionNotMet = (err: unknown): boolean => {
  const info = httpErrorInfo(err);
  return info.statusCode === 412 && (info.code === undefined || info.code === "ConditionNotMet");
};
