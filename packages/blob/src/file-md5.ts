import { createHash } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { BlobOperationError, abortCause, fsFailure, type BlobOperationSubject } from "./errors.js";
import type { MemoryBudget } from "./memory-budget.js";

const MiB = 1024 * 1024;
/** Read size of the MD5 verification pass (less when the memory budget is below it, ≥ 1 MiB). */
const VERIFY_READ_BYTES = 4 * MiB;

/** MD5 of the file's first `size` bytes, read sequentially in large reads (budgeted buffer). */
export const md5OfFile = async (
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
