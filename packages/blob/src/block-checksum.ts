/**
 * The transactional checksum of a staged block: Azure Storage's CRC64 (x-ms-content-crc64,
 * service version 2019-02-02 and later), computed by @hsmfleet/fs's native code on the libuv
 * threadpool. The service computes the same CRC over the bytes it received and refuses the block
 * (400) when they differ, exactly as it does for Content-MD5 — at a fraction of MD5's cost.
 */
import { crc64Async, crc64Bytes, preadCrc64 } from "@hsmfleet/fs/crc64";

/**
 * The 8 bytes of the x-ms-content-crc64 header for `body` (little-endian; the SDK base64-encodes
 * them). `body` must not change until the promise settles.
 */
export const blockCrc64 = async (body: Uint8Array): Promise<Buffer> =>
  crc64Bytes(await crc64Async(body));

/**
 * Reads one block of descriptor `fd` at `position` into `body` (its whole length, fewer bytes at
 * the end of the file) and returns the count with the x-ms-content-crc64 bytes of what was read,
 * both from ONE threadpool job (@hsmfleet/fs preadCrc64: the checksum runs on each piece as it
 * is read, while it is still in the CPU cache). A failed read rejects like node:fs (code, errno,
 * syscall "read").
 */
export const readBlockCrc64 = async (
  fd: number,
  body: Uint8Array,
  position: number,
): Promise<{ bytesRead: number; crc64: Buffer }> => {
  const r = await preadCrc64(fd, body, position);
  return { bytesRead: r.bytesRead, crc64: crc64Bytes(r.crc) };
};
