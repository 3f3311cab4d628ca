/**
 * Azure Storage's CRC64, the checksum of the `x-ms-content-crc64` request header (Put Block, Put
 * Blob; service version 2019-02-02 and later), computed natively (build/Release/hsmfleet_crc64.node,
 * native/crc64.c): carry-less multiplication on x86-64 — VPCLMULQDQ on 256-bit registers where the
 * CPU has it (~0.05 CPU s/GiB), else PCLMULQDQ (~0.1 CPU s/GiB); slicing-by-8 elsewhere (~1 s/GiB).
 *
 * The checksum is CRC-64/NVME: reflected polynomial 0x9A6C9329AC4BC9B5, initial value and final
 * xor ~0 (Go: crc64.Update with crc64.MakeTable(0x9A6C9329AC4BC9B5)); the header carries the 8
 * bytes little-endian in base64 (crc64Bytes). Seeds chain as in Go: crc64(b, crc64(a)) equals
 * crc64(a ++ b).
 */
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { DependencyError, errorMessage } from "@hsmfleet/core";

interface Crc64Binding {
  crc64(data: Uint8Array, seed?: bigint): bigint;
  crc64Async(data: Uint8Array, seed?: bigint): Promise<bigint>;
  crc64Table(data: Uint8Array, seed?: bigint): bigint;
  preadCrc64(fd: number, data: Uint8Array, position: number): Promise<[number, bigint]>;
  pwriteCrc64(
    fd: number,
    data: Uint8Array,
    position: number,
    sparse: boolean,
    seed: bigint,
  ): Promise<[number, bigint]>;
  readonly implementation: "vpclmulqdq" | "pclmul" | "table";
}

// Compiled layout: dist/src/crc64.js -> ../../build/Release/hsmfleet_crc64.node
const ADDON_PATH = fileURLToPath(
  new URL("../../build/Release/hsmfleet_crc64.node", import.meta.url),
);

let binding: Crc64Binding | undefined;

const load = (): Crc64Binding => {
  if (binding) return binding;
  try {
    binding = createRequire(import.meta.url)(ADDON_PATH) as Crc64Binding;
  } catch (err) {
    throw new DependencyError(
      `the @hsmfleet/fs CRC64 addon ${ADDON_PATH} is not usable (${errorMessage(err)}): run npm run build in packages/fs (needs gcc, make, python3)`,
      { cause: err },
    );
  }
  return binding;
};

/** Inputs at least this long go to the libuv threadpool in crc64Async; shorter ones run here. */
export const CRC64_ASYNC_MIN_BYTES = 256 * 1024;

/** CRC64 of `data` (continuing from `seed`, the CRC64 of the bytes before it), on this thread. */
export const crc64 = (data: Uint8Array, seed = 0n): bigint => load().crc64(data, seed);

/**
 * CRC64 of `data` on the libuv threadpool (inputs under CRC64_ASYNC_MIN_BYTES on this thread). The
 * caller must not change `data` until the promise settles.
 */
export const crc64Async = (data: Uint8Array, seed = 0n): Promise<bigint> => {
  const b = load();
  if (data.length < CRC64_ASYNC_MIN_BYTES) return Promise.resolve(b.crc64(data, seed));
  return b.crc64Async(data, seed);
};

/** What preadCrc64 read and the CRC64 of it. */
export interface ReadCrc64Result {
  /** Bytes read: data.length, or fewer at the end of the file. */
  bytesRead: number;
  /** CRC64 of the bytes read. */
  crc: bigint;
}

/**
 * Reads `data.length` bytes of descriptor `fd` at `position` into `data` (pread, until the end of
 * the file) and computes their CRC64 in the same libuv threadpool job, piece by piece as they are
 * read (each 1 MiB piece checksummed while it is still in the CPU cache): one thread hand-off and
 * one pass over memory per block, instead of a read job and then a checksum job. A failed read
 * rejects with an Error with `code`, `errno` and `syscall: "read"`, like node:fs. The caller must
 * not touch `data` until the promise settles.
 */
export const preadCrc64 = async (
  fd: number,
  data: Uint8Array,
  position: number,
): Promise<ReadCrc64Result> => {
  const [bytesRead, crc] = await load().preadCrc64(fd, data, position);
  return { bytesRead, crc };
};

/**
 * Writes all of `data` at `position` of descriptor `fd` (pwrite; EINTR and short writes retried)
 * and returns the CRC64 of `data` (continuing from `options.seed`, default 0: the CRC64 of the
 * bytes before `data`, so that the pieces of a range written as they arrive chain into the range's
 * CRC64), computed in the same libuv threadpool job piece by
 * piece right after each 1 MiB piece is written (while it is in the CPU cache): the download
 * direction's counterpart of preadCrc64, at ~0.1 CPU s/GiB instead of MD5's ~1.3. With `sparse`,
 * 4 KiB blocks aligned on the file's offsets that hold only zeros are checksummed but not written
 * (holes of a new file or released stub stay holes; SPARSE_BLOCK_BYTES). A failed write rejects
 * with an Error with `code`, `errno` and `syscall: "write"`. The caller must not change `data`
 * until the promise settles.
 */
export const pwriteCrc64 = async (
  fd: number,
  data: Uint8Array,
  position: number,
  options: { sparse?: boolean; seed?: bigint } = {},
): Promise<bigint> => {
  const [, crc] = await load().pwriteCrc64(
    fd,
    data,
    position,
    options.sparse ?? false,
    options.seed ?? 0n,
  );
  return crc;
};

/** The slicing-by-8 implementation alone (tests compare it with the fast one). */
export const crc64Portable = (data: Uint8Array, seed = 0n): bigint => load().crc64Table(data, seed);

/** Which implementation crc64 uses on this machine: "vpclmulqdq", "pclmul" or "table". */
export const crc64Implementation = (): "vpclmulqdq" | "pclmul" | "table" => load().implementation;

/** The 8 bytes the service expects (x-ms-content-crc64 is their base64): little-endian. */
export const crc64Bytes = (crc: bigint): Buffer => {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64LE(crc);
  return out;
};
