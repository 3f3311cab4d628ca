/**
 * HSM emulation on an ordinary file system: Lustre's struct hsm_attrs (24 bytes, little-endian)
 * is kept in an xattr ("trusted.hsm" like Lustre, or e.g. "user.hsm" for non-root runs). Paths
 * are raw bytes; xattrs are never set through a symlink (lsetxattr) and files are opened with
 * O_NOFOLLOW.
 */
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";

import {
  DEFAULT_HSM_XATTR,
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  HsmfleetError,
  decodeHsmAttrs,
  displayPath,
  encodeHsmAttrs,
  errorCode,
  errorMessage,
  testSeam,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";

import { checkPath } from "./errno.js";
import { getXattr, setXattr } from "./xattr.js";

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

const fsError = (err: unknown, operation: string, path: Buffer): unknown =>
  err instanceof HsmfleetError
    ? err
    : new FsOperationError(operation, displayPath(path), errorCode(err), errorMessage(err), err);

const checkArchiveId = (archiveId: number, path: Buffer): bigint => {
  if (!Number.isSafeInteger(archiveId) || archiveId < 0) {
    throw new FsOperationError(
      "hsm_state",
      displayPath(path),
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
  async state(path: Buffer): Promise<HsmAttrs | undefined> {
    const value = await getXattr(path, this.xattr);
    if (value === undefined) return undefined;
    try {
      return decodeHsmAttrs(value);
    } catch (err) {
      throw new FsOperationError("getxattr", displayPath(path), "EINVAL", errorMessage(err), err);
    }
  }

  async setState(path: Buffer, attrs: HsmAttrs): Promise<void> {
    await setXattr(path, this.xattr, encodeHsmAttrs(attrs));
  }

  /**
   * Makes `path` (an existing regular file without data, e.g. just made by
   * TargetRoot.createFile) a released stub of `size` bytes: ftruncate to `size` (sparse, no data
   * blocks), then flags HS_EXISTS|HS_ARCHIVED|HS_RELEASED (0xd) with `archiveId` — what
   * `lfs hsm_import` does on Lustre. A file that already has exactly `size` bytes and no data
   * blocks is accepted (a retried import); one with data rejects with FsOperationError EINVAL.
   * Symlinks are refused (O_NOFOLLOW: ELOOP), other non-regular entries with EINVAL. The file is
   * reopened for writing, so a non-root caller needs write permission on it (create it 0o600 and
   * set the final mode afterwards).
   */
  async importReleased(path: Buffer, size: number, archiveId: number): Promise<void> {
    checkPath(path, "open");
    const id = checkArchiveId(archiveId, path);
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new FsOperationError("truncate", displayPath(path), "EINVAL", `bad size ${size}`);
    }
    let op = "open";
    let handle;
    try {
      handle = await open(path, constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      throw fsError(err, op, path);
    }
    try {
      op = "fstat";
      const st = await handle.stat({ bigint: true });
      if (!st.isFile()) {
        throw new FsOperationError(op, displayPath(path), "EINVAL", "not a regular file");
      }
      const stub = st.size === BigInt(size) && st.blocks === 0n;
      if (st.size !== 0n && !stub) {
        throw new FsOperationError(
          op,
          displayPath(path),
          "EINVAL",
          `file already has data (${st.size} bytes); a released stub must start empty`,
        );
      }
      op = "ftruncate";
      if (st.size !== BigInt(size)) await handle.truncate(size);
      testSeam("stub-before-hsm-xattr", path);
    } catch (err) {
      throw fsError(err, op, path);
    } finally {
      await handle.close();
    }
    await this.setState(path, {
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
   * cleared. Only regular files: anything else, symlinks included (lsetxattr would tag the link
   * itself), rejects with FsOperationError EINVAL.
   */
  async markArchived(path: Buffer, archiveId: number): Promise<void> {
    const id = checkArchiveId(archiveId, path);
    await this.requireRegularFile(path);
    const previous = await this.state(path);
    await this.setState(path, {
      compat: previous?.compat ?? HSM_COMPAT,
      flags: ARCHIVED_FLAGS | ((previous?.flags ?? 0) & POLICY_FLAGS),
      archiveId: id,
      archiveVersion: previous?.archiveVersion ?? 0n,
    });
  }

  /** True when the file's data is only in the archive (RELEASED set). */
  async isReleased(path: Buffer): Promise<boolean> {
    const attrs = await this.state(path);
    return ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0;
  }

  private async requireRegularFile(path: Buffer): Promise<void> {
    checkPath(path, "lstat");
    let st;
    try {
      st = await lstat(path);
    } catch (err) {
      throw fsError(err, "lstat", path);
    }
    if (!st.isFile()) {
      throw new FsOperationError("lstat", displayPath(path), "EINVAL", "not a regular file");
    }
  }
}
