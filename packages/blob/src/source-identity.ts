/**
 * What a source file must be: the walk's size, mtime and inode (and device), and where to open
 * it (beneath a job root fd). Issue 14: an upload never reads a file other than the one the walk
 * listed, even when a directory on its path was swapped in between.
 */
import { BlobOperationError } from "./errors.js";
import type { BlobOperationSubject } from "./errors.js";

export interface SourceIdentity {
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Inode the walk saw; undefined or 0: not checked. */
  ino?: bigint | undefined;
  /** Device the walk saw; undefined or 0: not checked. */
  dev?: bigint | undefined;
}

/** Open the source by `rel` beneath the job root directory fd `rootFd`. */
export interface SourceBeneath {
  rootFd: number;
  rel: Buffer;
}

/** Refuses (non-retryable) a file whose inode/device differ from what the walk saw. */
export const checkIdentity = (
  where: BlobOperationSubject,
  expected: SourceIdentity | undefined,
  dev: bigint,
  ino: bigint,
): void => {
  if (expected === undefined) return;
  const badIno = expected.ino !== undefined && expected.ino !== 0n && expected.ino !== ino;
  const badDev = expected.dev !== undefined && expected.dev !== 0n && expected.dev !== dev;
  if (!badIno && !badDev) return;
  throw new BlobOperationError("open", where, undefined, {
    detail: `not the file the walk listed (inode ${ino} on device ${dev}, the walk saw inode ${expected.ino ?? "?"}${expected.dev ? ` on device ${expected.dev}` : ""}): something on its path was replaced since; refused`,
    retryable: false,
  });
};
