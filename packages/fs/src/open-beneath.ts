/**
 * openBeneath / openFileBeneath: the one-call forms of JobRoot's open for other packages (a raw
 * directory fd of a job root, a relative path from a message), and the FileHandle of a raw fd.
 */
import { constants } from "node:fs";
import { close as closeCb } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";

import { FsOperationError, displayPath } from "@hsmfleet/core";

import { errnoName } from "./errno.js";
import { isNativeErrnoError, loadNative } from "./native.js";
import { pauseBeforeOpenForTest } from "./test-seam.js";
import {
  STAT_REC,
  UnsafePathError,
  checkRelativePath,
  openat2Disabled,
  parseStat,
} from "./beneath-path.js";
import type { BeneathStat } from "./beneath-path.js";

/** beneath.c's open operation. */
const OP_OPEN = 1;

/**
 * The one-call form for other packages (message validation, downloads): opens `rel` beneath the
 * directory fd `rootFd` with `flags` (O_NOFOLLOW|O_CLOEXEC added; `mode` for O_CREAT) and returns
 * the fd and its fstat. No symlink is followed anywhere and the path cannot leave the root.
 */
export const openBeneath = async (
  rootFd: number,
  rel: Buffer,
  flags: number,
  mode = 0o600,
): Promise<{ fd: number; stat: BeneathStat }> => {
  checkRelativePath(rel);
  await pauseBeforeOpenForTest(rel);
  const out = Buffer.alloc(STAT_REC);
  try {
    const fd = await loadNative().beneath(
      OP_OPEN,
      rootFd,
      rel,
      [openat2Disabled() ? 1 : 0, flags, mode],
      null,
      out,
      null,
    );
    return { fd, stat: parseStat(out) };
  } catch (err) {
    if (!isNativeErrnoError(err)) throw err;
    if (err.errno === 40) {
      throw new UnsafePathError(
        displayPath(rel),
        "a path component is a symlink (not followed)",
        "open",
      );
    }
    throw new FsOperationError("open", displayPath(rel), errnoName(err.errno), err.message, err);
  }
};

/**
 * A FileHandle for a raw fd from openBeneath: /proc/self/fd/N names the very inode that fd has
 * open (a magic link, not a path walk), so the reopen cannot be redirected. The raw fd is closed.
 */
export const handleOf = async (fd: number, flags: number, shown: string): Promise<FileHandle> => {
  try {
    const again = flags & ~(constants.O_CREAT | constants.O_EXCL | constants.O_TRUNC);
    return await open(`/proc/self/fd/${fd}`, again | constants.O_NOCTTY);
  } catch (err) {
    throw new FsOperationError(
      "open",
      shown,
      (err as NodeJS.ErrnoException).code ?? "EIO",
      "reopening the checked fd through /proc/self/fd failed (is /proc mounted?)",
      err,
    );
  } finally {
    closeCb(fd, () => undefined);
  }
};

/** openBeneath as a FileHandle (see handleOf); O_CREAT/O_EXCL/O_TRUNC apply to the first open. */
export const openFileBeneath = async (
  rootFd: number,
  rel: Buffer,
  flags: number,
  mode = 0o600,
): Promise<{ handle: FileHandle; stat: BeneathStat }> => {
  const { fd, stat } = await openBeneath(rootFd, rel, flags, mode);
  return { handle: await handleOf(fd, flags, displayPath(rel)), stat };
};
