/**
 * HSM release of many files on the emulation backend through the native addon: each chunk of
 * paths is one libuv threadpool job (native/hsmbatch.c) that reads struct hsm_attrs, detects a
 * write since the recorded data version, checks the release rules, drops the data keeping size and
 * mtime and writes the new state, per file, without returning to JS in between. Chunks run at
 * once, so the threadpool's threads (UV_THREADPOOL_SIZE: the CLI sets 16) share a large batch.
 */
import { FsOperationError, decodeHsmAttrs, displayPath } from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";

import { checkPath, checkXattrName, errnoMessage, errnoName } from "./errno.js";
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
  /** A system call failed: FsOperationError naming the path, the operation and the cause. */
  | { outcome: "error"; error: FsOperationError }
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
const NOT_REGULAR = -1;
const RELEASED: ReleaseRecord = Object.freeze({ outcome: "released" });
const ALREADY: ReleaseRecord = Object.freeze({ outcome: "already" });

const decode = (rec: Buffer, path: Buffer): ReleaseRecord => {
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
          ? new FsOperationError(op, displayPath(path), "EINVAL", "not a regular file")
          : new FsOperationError(op, displayPath(path), errnoName(errno), errnoMessage(errno));
      return { outcome: "error", error };
    }
    default:
      throw new Error(`hsmfleet_fs: unknown release outcome ${rec[0]}`);
  }
};

/**
 * Releases `absPaths` (raw bytes; never through a symlink) with hsm_attrs in `xattr`; one record
 * per path, in order. Paths with a NUL byte reject with FsOperationError EINVAL before anything runs.
 */
export const releaseBatch = async (
  absPaths: readonly Buffer[],
  xattr: string,
  chunkFiles = RELEASE_CHUNK_FILES,
): Promise<ReleaseRecord[]> => {
  for (const p of absPaths) {
    checkPath(p, "open");
    checkXattrName(xattr, "getxattr", p);
  }
  const native = loadNative();
  const chunks: Promise<Buffer>[] = [];
  for (let i = 0; i < absPaths.length; i += chunkFiles) {
    chunks.push(native.releaseBatch(absPaths.slice(i, i + chunkFiles), xattr));
  }
  const out: ReleaseRecord[] = [];
  for (const [c, chunk] of (await Promise.all(chunks)).entries()) {
    for (let k = 0; k * REC_SIZE < chunk.length; k++) {
      const i = c * chunkFiles + k;
      out.push(decode(chunk.subarray(k * REC_SIZE, (k + 1) * REC_SIZE), absPaths[i]!));
    }
  }
  return out;
};
