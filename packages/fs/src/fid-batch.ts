/**
 * Emulated FIDs of many files through the native addon: each chunk of paths is one libuv
 * threadpool job (native/hsmbatch.c) that lstats every path (never following a symlink) and formats
 * the FID as core's formatFid(fidForInode(dev, ino)) does. What the coordinator's dispatch looks
 * up for every item of an HSM request on the emulation backend.
 */
import { FsOperationError, displayPath } from "@hsmfleet/core";

import { checkPath, errnoMessage, errnoName } from "./errno.js";
import { loadNative } from "./native.js";

/** Paths per threadpool job. Default 256. */
export const FID_CHUNK_FILES = 256;

const REC_SIZE = 48;

/**
 * The FID text of each path, in order, or FsOperationError("path2fid", path, code) when lstat
 * fails or the path holds a NUL byte.
 */
export const fidBatch = async (
  absPaths: readonly Buffer[],
  chunkFiles = FID_CHUNK_FILES,
): Promise<(string | FsOperationError)[]> => {
  const out: (string | FsOperationError)[] = new Array<string | FsOperationError>(absPaths.length);
  const todo: number[] = [];
  for (const [i, p] of absPaths.entries()) {
    try {
      checkPath(p, "path2fid");
      todo.push(i);
    } catch (err) {
      if (!(err instanceof FsOperationError)) throw err;
      out[i] = err;
    }
  }
  const native = loadNative();
  const chunks: Promise<void>[] = [];
  for (let c = 0; c < todo.length; c += chunkFiles) {
    const idx = todo.slice(c, c + chunkFiles);
    chunks.push(
      native.fidBatch(idx.map((i) => absPaths[i]!)).then((buf) => {
        for (const [k, i] of idx.entries()) {
          const rec = buf.subarray(k * REC_SIZE, (k + 1) * REC_SIZE);
          const errno = rec.readInt32LE(0);
          out[i] =
            errno === 0
              ? rec.toString("latin1", 8, 8 + rec.readUInt32LE(4))
              : new FsOperationError(
                  "path2fid",
                  displayPath(absPaths[i]!),
                  errnoName(errno),
                  errnoMessage(errno),
                );
        }
      }),
    );
  }
  await Promise.all(chunks);
  return out;
};
