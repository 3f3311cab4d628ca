/**
 * HSM emulation on an ordinary file system: Lustre's struct hsm_attrs (24 bytes, little-endian)
 * is kept in an xattr ("trusted.hsm" like Lustre, or e.g. "user.hsm" for non-root runs). Every
 * file is named by a job root and a path relative to it, and reached beneath the root's directory
 * fd with no symlink followed anywhere (JobRoot, job-root.ts): xattrs are read and set through an
 * fd of the entry itself, files opened O_NOFOLLOW beneath the root.
 */
import { constants } from "node:fs";

import {
  DEFAULT_HSM_XATTR,
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  HsmfleetError,
  decodeHsmAttrs,
  encodeHsmAttrs,
  errorCode,
  errorMessage,
  testSeam,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";

import { isRegular } from "./beneath-path.js";
import type { JobRoot } from "./job-root.js";

export interface HsmEmulationOptions {
  /** Xattr holding struct hsm_attrs; default DEFAULT_HSM_XATTR ("trusted.hsm"). */
  xattr?: string;
}

/** HS_EXISTS|HS_ARCHIVED|HS_RELEASED (0xd): a released stub, what `lfs hsm_import` leaves. */
export const RELEASED_STUB_FLAGS = HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Released;
/** HS_EXISTS|HS_ARCHIVED (0x9): data on disk and in the archive, unchanged since. */
export const ARCHIVED_FLAGS = HsmFlag.Exists | HsmFlag.Archived;
/** Policy bits markArchived keeps from an existing state (like a Lustre restore does). */
const POLICY_FLAGS = HsmFlag.NoRelease | HsmFlag.NoArchive;

/**
 * True unless the attrs say "clean": EXISTS and ARCHIVED set and DIRTY clear (a released stub is
 * clean). No attrs / flags 0 ("new") is dirty-or-new.
 */
export const isDirtyOrNew = (attrs: HsmAttrs | undefined): boolean => {
  const flags = attrs?.flags ?? 0;
  return (flags & ARCHIVED_FLAGS) !== ARCHIVED_FLAGS || (flags & HsmFlag.Dirty) !== 0;
};

const fsError = (err: unknown, operation: string, path: string): unknown =>
  err instanceof HsmfleetError
    ? err
    : new FsOperationError(operation, path, errorCode(err), errorMessage(err), err);

const checkArchiveId = (archiveId: number, path: string): bigint => {
  if (!Number.isSafeInteger(archiveId) || archiveId < 0) {
    throw new FsOperationError(
      "hsm_state",
      path,
      "EINVAL",
      `archive id ${archiveId} is not a non-negative integer`,
    );
  }
  return BigInt(archiveId);
};

export class HsmEmulation {
  readonly xattr: string;

  constructor(options?: HsmEmulationOptions) {
    this.xattr = options?.xattr ?? DEFAULT_HSM_XATTR;
    if (this.xattr === "" || this.xattr.includes("\0")) {
      throw new TypeError(`invalid HSM xattr name ${JSON.stringify(this.xattr)}`);
    }
  }

  /**
   * The stored state, or undefined without the xattr (both that and flags 0 mean "new", see
   * core's hsmStateName). A value shorter than 24 bytes rejects with FsOperationError EINVAL.
   */
  async state(root: JobRoot, rel: Buffer): Promise<HsmAttrs | undefined> {
    const value = await root.getXattr(rel, this.xattr);
    if (value === undefined) return undefined;
    try {
      return decodeHsmAttrs(value);
    } catch (err) {
      throw new FsOperationError("getxattr", root.display(rel), "EINVAL", errorMessage(err), err);
    }
  }

  async setState(root: JobRoot, rel: Buffer, attrs: HsmAttrs): Promise<void> {
    await root.setXattr(rel, this.xattr, encodeHsmAttrs(attrs));
  }

  /**
   * Makes `rel` beneath `root` (an existing regular file without data, e.g. just made by
   * TargetRoot.createFile) a released stub of `size` bytes: ftruncate to `size` (sparse, no data
   * blocks), then flags HS_EXISTS|HS_ARCHIVED|HS_RELEASED (0xd) with `archiveId` — what
   * `lfs hsm_import` does on Lustre. A file that already has exactly `size` bytes and no data
   * blocks is accepted (a retried import); one with data rejects with FsOperationError EINVAL.
   * Symlinks are refused (UnsafePathError), other non-regular entries with EINVAL. The file is
   * reopened for writing, so a non-root caller needs write permission on it (create it 0o600 and
   * set the final mode afterwards).
   */
  async importReleased(root: JobRoot, rel: Buffer, size: number, archiveId: number): Promise<void> {
    const path = root.display(rel);
    const id = checkArchiveId(archiveId, path);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new FsOperationError("truncate", path, "EINVAL", `bad size ${size}`);
    }
    const { handle, stat } = await root.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    let op = "fstat";
    try {
      if (!isRegular(stat)) {
        throw new FsOperationError(op, path, "EINVAL", "not a regular file");
      }
      const stub = stat.size === size && stat.blocks === 0n;
      if (stat.size !== 0 && !stub) {
        throw new FsOperationError(
          op,
          path,
          "EINVAL",
          `file already has data (${stat.size} bytes); a released stub must start empty`,
        );
      }
      op = "ftruncate";
      if (stat.size !== size) await handle.truncate(size);
      testSeam("stub-before-hsm-xattr", root.absolute(rel));
    } catch (err) {
      throw fsError(err, op, path);
    } finally {
      await handle.close();
    }
    await this.setState(root, rel, {
      compat: HSM_COMPAT,
      flags: RELEASED_STUB_FLAGS,
      archiveId: id,
      archiveVersion: 0n,
    });
  }

  /**
   * After the data was written in full (import --mode full, restore): flags
   * HS_EXISTS|HS_ARCHIVED (0x9) with `archiveId`. NORELEASE/NOARCHIVE policy bits of an existing
   * state are kept, as a Lustre restore keeps them; everything else (RELEASED, DIRTY, LOST) is
   * cleared. Only regular files: anything else, symlinks included, rejects (FsOperationError
   * EINVAL; a symlink anywhere on the way UnsafePathError).
   */
  async markArchived(root: JobRoot, rel: Buffer, archiveId: number): Promise<void> {
    const id = checkArchiveId(archiveId, root.display(rel));
    await this.requireRegularFile(root, rel);
    const previous = await this.state(root, rel);
    await this.setState(root, rel, {
      compat: previous?.compat ?? HSM_COMPAT,
      flags: ARCHIVED_FLAGS | ((previous?.flags ?? 0) & POLICY_FLAGS),
      archiveId: id,
      archiveVersion: previous?.archiveVersion ?? 0n,
    });
  }

  /** True when the file's data is only in the archive (RELEASED set). */
  async isReleased(root: JobRoot, rel: Buffer): Promise<boolean> {
    const attrs = await this.state(root, rel);
    return ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0;
  }

  private async requireRegularFile(root: JobRoot, rel: Buffer): Promise<void> {
    const st = await root.lstat(rel);
    if (st === undefined) {
      throw new FsOperationError("lstat", root.display(rel), "ENOENT", "no such file or directory");
    }
    if (!isRegular(st)) {
      throw new FsOperationError("lstat", root.display(rel), "EINVAL", "not a regular file");
    }
  }
}
