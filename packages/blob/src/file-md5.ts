import type { FileHandle } from "node:fs/promises";
import { Md5Stream } from "@hsmfleet/fs";
import { BlobOperationError, abortCause, fsFailure, type BlobOperationSubject } from "./errors.js";

const MiB = 1024 * 1024;
/** Bytes hashed per native job of the verification pass (an abort is seen between jobs). */
const VERIFY_STEP_BYTES = 64 * MiB;

/**
 * MD5 of the file's first `size` bytes, re-read natively (Md5Stream.hashFileRange: pread into a
 * native 1 MiB buffer and MD5 on a threadpool thread; nothing on the JS thread or heap).
 */
export const md5OfFile = async (
  fh: FileHandle,
  size: number,
  where: BlobOperationSubject,
  signal: AbortSignal | undefined,
): Promise<Buffer> => {
  const hash = new Md5Stream();
  let position = 0;
  while (position < size) {
    if (signal?.aborted) throw new BlobOperationError("read", where, abortCause(signal));
    let n: number;
    try {
      n = await hash.hashFileRange(fh.fd, position, Math.min(VERIFY_STEP_BYTES, size - position));
    } catch (err) {
      throw fsFailure("read", where, err);
    }
    if (n === 0) break; // shorter than the blob: the digest will not match
    position += n;
  }
  return hash.digest();
};
