/**
 * Per-range integrity of downloads: Get Blob with `x-ms-range-get-content-crc64: true` makes
 * Azure Blob Storage compute the CRC64 of the range it sends (from the stored data) and return it
 * in `x-ms-content-crc64` (8 bytes little-endian, base64; ranges of at most 4 MiB, else 400). The
 * downloader computes the CRC64 of the same bytes natively in the job that writes them
 * (@hsmfleet/fs pwriteCrc64, ~0.1 CPU s/GiB against MD5's ~1.3) and compares: every byte that
 * reached the file is checked against what the service holds, without an MD5 and without a
 * second pass over the file.
 *
 * Not every endpoint answers it: Azurite (3.35) ignores the header and sends no
 * x-ms-content-crc64. The first ranged answer without one marks the endpoint (scheme, host, port)
 * as not supporting it for the life of the process, and downloads from it check the blob's
 * Content-MD5 instead
 * (hashed in file order as the ranges are written); the download that found out checks its file
 * by re-reading it natively (md5OfFile).
 */
import type { DirectContainerAddress } from "./direct-put.js";

/** The largest range the service computes a CRC64 for (x-ms-range-get-content-crc64). */
export const RANGE_CRC64_MAX_BYTES = 4 * 1024 * 1024;

/** How often a range whose CRC64 does not match is fetched again before the download fails. */
export const RANGE_CRC64_TRIES = 3;

/** Endpoints (scheme//host:port) → whether they answered range CRC64s. */
const support = new Map<string, boolean>();

const endpointKey = (a: DirectContainerAddress): string => `${a.protocol}//${a.hostname}:${a.port}`;

/** Whether the endpoint answered range CRC64s: true, false, or undefined (not known yet). */
export const rangeCrc64Support = (address: DirectContainerAddress): boolean | undefined =>
  support.get(endpointKey(address));

/** Records what a ranged answer told about the endpoint (a missing checksum sticks). */
export const noteRangeCrc64 = (address: DirectContainerAddress, answered: boolean): void => {
  const key = endpointKey(address);
  if (support.get(key) === false) return;
  support.set(key, answered);
};

/** x-ms-content-crc64 (base64 of 8 little-endian bytes) as a number; undefined when absent or malformed. */
export const parseCrc64Header = (value: string | undefined): bigint | undefined => {
  if (value === undefined || value === "") return undefined;
  const bytes = Buffer.from(value, "base64");
  if (bytes.length !== 8) return undefined;
  return bytes.readBigUInt64LE(0);
};

/** A CRC64 as Azure shows it (base64 of the 8 little-endian bytes). */
export const crc64Base64 = (crc: bigint): string => {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64LE(crc);
  return b.toString("base64");
};
