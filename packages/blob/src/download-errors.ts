import { HsmfleetError, errorMessage } from "@hsmfleet/core";
import type { BlobOperationSubject } from "./errors.js";

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
    /** The data was checked before it was written, and not written (smallFileJob). */
    notWritten = false,
  ) {
    const truncated = truncateError === undefined;
    super(
      `download blob "${where.blobName}" in container "${where.container}" → ${where.path}: ` +
        `MD5 of the ${notWritten ? "downloaded data" : "written file"} ${actual.toString("base64")} does not match the blob's ` +
        `Content-MD5 ${expected.toString("base64")}; ` +
        (notWritten
          ? "the data was not written"
          : truncated
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

/**
 * A range's bytes as received differ from the service's CRC64 of that range
 * (x-ms-range-get-content-crc64), after RANGE_CRC64_TRIES fetches of it. The bytes were written
 * (the write and the checksum are one job); the caller drops the file as after any failed
 * download. Retryable: the damage was on the way.
 */
export class RangeChecksumError extends HsmfleetError {
  readonly blobName: string | undefined;
  readonly container: string | undefined;
  readonly path: string | undefined;
  /** First byte of the range. */
  readonly offset: number;
  /** Bytes of the range. */
  readonly length: number;
  /** Base64 of the 8 little-endian bytes, as in x-ms-content-crc64. */
  readonly expectedCrc64: string;
  readonly actualCrc64: string;
  constructor(
    where: BlobOperationSubject,
    offset: number,
    length: number,
    expected: string,
    actual: string,
    tries: number,
  ) {
    super(
      `download blob "${where.blobName}" in container "${where.container}" → ${where.path}: ` +
        `bytes ${offset}-${offset + length - 1} (range of ${length} bytes at offset ${offset}): ` +
        `CRC64 of the received bytes ${actual} does not match the service's ${expected} ` +
        `(x-ms-content-crc64), ${tries} ${tries === 1 ? "try" : "tries"}`,
      { retryable: true },
    );
    this.name = "RangeChecksumError";
    this.blobName = where.blobName;
    this.container = where.container;
    this.path = where.path;
    this.offset = offset;
    this.length = length;
    this.expectedCrc64 = expected;
    this.actualCrc64 = actual;
  }
}
