/**
 * The transactional checksum of a staged block: Azure Storage's CRC64 (x-ms-content-crc64,
 * service version 2019-02-02 and later), computed by @hsmfleet/fs's native code on the libuv
 * threadpool. The service computes the same CRC over the bytes it received and refuses the block
 * (400) when they differ, exactly as it does for Content-MD5 — at a fraction of MD5's cost.
 */
import { crc64Async, crc64Bytes } from "@hsmfleet/fs/crc64";

/**
 * The 8 bytes of the x-ms-content-crc64 header for `body` (little-endian; the SDK base64-encodes
 * them). `body` must not change until the promise settles.
 */
export const blockCrc64 = async (body: Uint8Array): Promise<Buffer> =>
  crc64Bytes(await crc64Async(body));
