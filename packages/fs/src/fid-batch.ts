/**
 * FIDs of many files through the native addon: each chunk of paths is one libuv threadpool job
 * (native/hsmbatch.c) that opens every path beneath the job root's fd (O_PATH, no symlink followed
 * anywhere: a final symlink is the link itself, as lstat) and formats its FID — the emulated one,
 * core's formatFid(fidForInode(dev, ino)), or with `lustre` the file's real Lustre FID where the
 * file system gives one (its file handle, as llapi_fd2fid reads it). What the coordinator's
 * dispatch looks up for every item of an HSM request, and what the lustre backend names files by.
 */
import { FsOperationError } from "@hsmfleet/core";

import { checkRelativePath } from "./beneath-path.js";
import type { JobRoot } from "./job-root.js";
import { loadNative } from "./native.js";

/** Paths per threadpool job. Default 256. */
export const FID_CHUNK_FILES = 256;

const REC_SIZE = 48;
const NOT_REGULAR = -1;
const FID_LUSTRE = 2;
const FID_REGULAR = 4;

export interface FidBatchOptions {
  /** The real Lustre FID where the file system gives one (else the emulated one). Default false. */
  lustre?: boolean | undefined;
  /** Refuse anything but a regular file ("not a regular file"). Default false. */
  regularOnly?: boolean | undefined;
  /** Paths per threadpool job; default FID_CHUNK_FILES. */
  chunkFiles?: number | undefined;
}

/**
 * The FID text of each path (relative to `root`), in order, or the error naming the path, the
 * operation ("path2fid") and the cause: FsOperationError, or UnsafePathError for a symlink met on
 * the way or a malformed path.
 */
export const fidBatch = async (
  root: JobRoot,
  rels: readonly Buffer[],
  options: FidBatchOptions = {},
): Promise<(string | Error)[]> => {
  const chunkFiles = options.chunkFiles ?? FID_CHUNK_FILES;
  const flags = (options.lustre ? FID_LUSTRE : 0) | (options.regularOnly ? FID_REGULAR : 0);
  const out: (string | Error)[] = new Array<string | Error>(rels.length);
  const todo: number[] = [];
  for (const [i, rel] of rels.entries()) {
    try {
      checkRelativePath(rel);
      todo.push(i);
    } catch (err) {
      out[i] = err instanceof Error ? err : new Error(String(err));
    }
  }
  const native = loadNative();
  await root.withFd("path2fid", (fd, fallback) => {
    const chunks: Promise<void>[] = [];
    for (let c = 0; c < todo.length; c += chunkFiles) {
      const idx = todo.slice(c, c + chunkFiles);
      chunks.push(
        native
          .fidBatch(
            fd,
            idx.map((i) => rels[i]!),
            flags | (fallback ? 1 : 0),
          )
          .then((buf) => {
            for (const [k, i] of idx.entries()) {
              const rec = buf.subarray(k * REC_SIZE, (k + 1) * REC_SIZE);
              const errno = rec.readInt32LE(0);
              out[i] =
                errno === 0
                  ? rec.toString("latin1", 8, 8 + rec.readUInt32LE(4))
                  : errno === NOT_REGULAR
                    ? new FsOperationError(
                        "path2fid",
                        root.display(rels[i]!),
                        "EINVAL",
                        "not a regular file",
                      )
                    : root.errnoError("path2fid", rels[i]!, errno, "open", rec.readUInt32LE(4));
            }
          }),
      );
    }
    return Promise.all(chunks);
  });
  return out;
};
