/**
 * HSM release of many files on the emulation backend through the native addon: each chunk of
 * paths is one libuv threadpool job (native/hsmbatch.c) that opens each file beneath the job
 * root's fd (no symlink followed anywhere), reads struct hsm_attrs, detects a write since the
 * recorded data version, checks the release rules, drops the data keeping size and mtime and
 * writes the new state, per file, on that one inode, without returning to JS in between. Chunks
 * run at once, so the threadpool's threads (UV_THREADPOOL_SIZE: the CLI sets 16) share a large
 * batch.
 */
import { FsOperationError, decodeHsmAttrs } from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";

import { checkRelativePath } from "./beneath-path.js";
import { checkXattrName } from "./errno.js";
import type { JobRoot } from "./job-root.js";
import { loadNative } from "./native.js";

/** Files per threadpool job. Default 16: a list of 256 makes 16 jobs, one per CLI threadpool thread. */
export const RELEASE_CHUNK_FILES = 16;

/** What the native release did with one file. */
export type ReleaseRecord =
  /** Released now. */
  | { outcome: "released" }
  /** Already released: nothing done. */
  | { outcome: "already" }
  /** The rules refuse it; `attrs` is the state decided on (DIRTY already persisted if found). */
  | { outcome: "refused"; attrs: HsmAttrs }
  /**
   * A system call failed: FsOperationError naming the path, the operation and the cause, or
   * UnsafePathError naming the symlink met on the way (nothing followed).
   */
  | { outcome: "error"; error: Error }
  /** No usable hsm_attrs (absent, another size, xattrs unsupported): nothing done, ask JS. */
  | { outcome: "fallback" };

const REC_SIZE = 32;
const OUTCOMES = ["released", "already", "refused", "error", "fallback"] as const;
const OPS = [
  "",
  "getxattr",
  "lstat",
  "setxattr",
  "open",
  "fstat",
  "ftruncate",
  "futimes",
  "close",
] as const;
/** The operation an errno is reported as: the release, and the system call that failed. */
const OP_NAMES = [
  "release",
  "release (getxattr)",
  "release (lstat)",
  "release (setxattr)",
  "release (open)",
  "release (fstat)",
  "release (ftruncate)",
  "release (futimes)",
  "release (close)",
] as const;
const NOT_REGULAR = -1;
const RELEASED: ReleaseRecord = Object.freeze({ outcome: "released" });
const ALREADY: ReleaseRecord = Object.freeze({ outcome: "already" });

const decode = (rec: Buffer, root: JobRoot, rel: Buffer): ReleaseRecord => {
  const outcome = OUTCOMES[rec[0]!];
  switch (outcome) {
    case "released":
      return RELEASED;
    case "already":
      return ALREADY;
    case "refused":
      return { outcome, attrs: decodeHsmAttrs(rec.subarray(8, 32)) };
    case "fallback":
      return { outcome };
    case "error": {
      const op = OPS[rec[1]!] || "release";
      const errno = rec.readInt32LE(4);
      const error =
        errno === NOT_REGULAR
          ? new FsOperationError("release", root.display(rel), "EINVAL", "not a regular file")
          : root.errnoError(OP_NAMES[rec[1]!] ?? "release", rel, errno, op, rec.readUInt16LE(2));
      return { outcome: "error", error };
    }
    default:
      throw new Error(`hsmfleet_fs: unknown release outcome ${rec[0]}`);
  }
};

/**
 * Releases `rels` (paths relative to `root`, raw bytes, reached beneath its fd with no symlink
 * followed) with hsm_attrs in `xattr`; one record per path, in order. A malformed path (absolute,
 * '.', '..', empty segment, NUL) rejects with UnsafePathError before anything runs.
 */
export const releaseBatch = async (
  root: JobRoot,
  rels: readonly Buffer[],
  xattr: string,
  chunkFiles = RELEASE_CHUNK_FILES,
): Promise<ReleaseRecord[]> => {
  for (const rel of rels) {
    checkRelativePath(rel);
    checkXattrName(xattr, "getxattr", root.absolute(rel));
  }
  const native = loadNative();
  const records = await root.withFd("release", (fd, fallback) => {
    const chunks: Promise<Buffer>[] = [];
    for (let i = 0; i < rels.length; i += chunkFiles) {
      chunks.push(native.releaseBatch(fd, rels.slice(i, i + chunkFiles), xattr, fallback));
    }
    return Promise.all(chunks);
  });
  const out: ReleaseRecord[] = [];
  for (const [c, chunk] of records.entries()) {
    for (let k = 0; k * REC_SIZE < chunk.length; k++) {
      const i = c * chunkFiles + k;
      out.push(decode(chunk.subarray(k * REC_SIZE, (k + 1) * REC_SIZE), root, rels[i]!));
    }
  }
  return out;
};
