/**
 * The HSM backend's operations on an import target's files. On the emulation backend they go
 * through the job root's fd with the path relative to it (JobRoot: nothing followed, the inode
 * opened is the one checked); the lustre backend asks `lfs` by path (see docs/security.md, Path
 * safety).
 */
import { constants } from "node:fs";
import {
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  canRelease,
  decodeHsmAttrs,
  encodeHsmAttrs,
  errorMessage,
  testSeam,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import { ARCHIVED_FLAGS, RELEASED_STUB_FLAGS, dataVersion } from "@hsmfleet/fs";
import type { EntryStat, HsmBackend, SmallFileHsmState, TargetRoot } from "@hsmfleet/fs";

export class TargetHsm {
  readonly #root: TargetRoot;
  readonly #hsm: HsmBackend;
  readonly #archiveId: number;

  constructor(root: TargetRoot, hsm: HsmBackend, archiveId: number) {
    this.#root = root;
    this.#hsm = hsm;
    this.#archiveId = archiveId;
  }

  /**
   * HSM state of a regular file. The emulation backend's xattr is read through an fd of the file
   * opened beneath the root (nothing followed); a clean archived file whose data version no
   * longer matches its size and mtime is reported (and persisted) DIRTY, as the backend's own
   * state() does. The lustre backend reads it beneath the root too, or asks `lfs` by the file's
   * FID (see docs/security.md, Path safety).
   */
  async state(rel: Buffer, st: EntryStat): Promise<HsmAttrs | undefined> {
    if (this.#hsm.kind !== "hsm-emulation") return this.#hsm.state(this.#root.jobRoot, rel);
    const jr = this.#root.jobRoot;
    const value = await jr.getXattr(rel, this.#hsm.xattr);
    if (value === undefined) return undefined;
    let attrs: HsmAttrs;
    try {
      attrs = decodeHsmAttrs(value);
    } catch (err) {
      throw new FsOperationError("getxattr", jr.display(rel), "EINVAL", errorMessage(err), err);
    }
    const flags = attrs.flags;
    if (
      attrs.archiveVersion === 0n ||
      (flags & HsmFlag.Archived) === 0 ||
      (flags & HsmFlag.Dirty) !== 0
    )
      return attrs;
    const version = dataVersion(
      st.size,
      BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec),
    );
    if (version === attrs.archiveVersion) return attrs;
    const dirty = { ...attrs, flags: (flags | HsmFlag.Dirty) & ~HsmFlag.Released };
    await jr.setXattr(rel, this.#hsm.xattr, encodeHsmAttrs(dirty));
    return dirty;
  }

  /**
   * Drops a clean file's data, keeping its size (`lfs hsm_release`; the rules are checked). On the
   * emulation backend through an fd opened beneath the target (never through a swapped
   * directory), the size and mtime kept; the lustre backend asks `lfs` by the file's FID.
   */
  async release(rel: Buffer): Promise<void> {
    const hsm = this.#hsm;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.release(this.#root.jobRoot, rel);
      return;
    }
    const jr = this.#root.jobRoot;
    const st = await this.#root.lstat(rel);
    if (!st?.isFile()) {
      throw new FsOperationError("release", jr.display(rel), "EINVAL", "not a regular file");
    }
    const attrs = await this.state(rel, st);
    const allowed = canRelease(attrs?.flags ?? 0);
    if (!allowed.ok) {
      throw new FsOperationError("release", jr.display(rel), "EPERM", allowed.reason);
    }
    if (((attrs?.flags ?? 0) & HsmFlag.Released) !== 0) return;
    const { handle, stat } = await jr.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    let version: bigint;
    try {
      if (stat.ino !== st.ino || stat.dev !== st.dev) {
        throw new FsOperationError("release", jr.display(rel), "ESTALE", "replaced meanwhile");
      }
      const now = await handle.stat({ bigint: true });
      await handle.truncate(0);
      await handle.truncate(Number(now.size));
      await handle.utimes(
        new Date(Number(now.atimeNs / 1_000_000n)),
        Number(now.mtimeNs / 1000n) / 1e6,
      );
      const after = await handle.stat({ bigint: true });
      version = dataVersion(after.size, after.mtimeNs);
    } finally {
      await handle.close();
    }
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({ ...attrs!, flags: allowed.flags, archiveVersion: version }),
    );
  }

  /** lfs hsm_import's effect on the emulation backend, fd-relative: a sparse released stub. */
  async importReleased(rel: Buffer, size: number): Promise<void> {
    const hsm = this.#hsm;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.importReleased(this.#root.jobRoot, rel, size, this.#archiveId);
      return;
    }
    const jr = this.#root.jobRoot;
    const { handle, stat } = await jr.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      if ((stat.mode & 0o170000) !== 0o100000) {
        throw new FsOperationError("open", jr.display(rel), "EINVAL", "not a regular file");
      }
      const stub = stat.size === size && stat.blocks === 0n;
      if (stat.size !== 0 && !stub) {
        throw new FsOperationError(
          "fstat",
          jr.display(rel),
          "EINVAL",
          `file already has data (${stat.size} bytes); a released stub must start empty`,
        );
      }
      if (stat.size !== size) await handle.truncate(size);
    } finally {
      await handle.close();
    }
    testSeam("stub-before-hsm-xattr", jr.absolute(rel));
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({
        compat: HSM_COMPAT,
        flags: RELEASED_STUB_FLAGS,
        archiveId: BigInt(this.#archiveId),
        archiveVersion: 0n,
      }),
    );
  }

  /**
   * The xattr importReleased writes on a file that has none (the emulation backend's released stub
   * state), for a fresh file's native jobs (fresh-stub.ts); undefined on Lustre (lfs hsm_import).
   */
  releasedStubXattr(): [string, Buffer] | undefined {
    if (this.#hsm.kind !== "hsm-emulation") return undefined;
    return [
      this.#hsm.xattr,
      encodeHsmAttrs({
        compat: HSM_COMPAT,
        flags: RELEASED_STUB_FLAGS,
        archiveId: BigInt(this.#archiveId),
        archiveVersion: 0n,
      }),
    ];
  }

  /**
   * What markArchived writes, for a small file's one native job (fs smallFileJob) — emulation
   * backend only (Lustre's state is set by lfs: undefined).
   */
  archivedState(): SmallFileHsmState | undefined {
    if (this.#hsm.kind !== "hsm-emulation") return undefined;
    return {
      xattr: this.#hsm.xattr,
      setFlags: ARCHIVED_FLAGS,
      keepFlags: HsmFlag.NoRelease | HsmFlag.NoArchive,
      archiveId: this.#archiveId,
      compat: HSM_COMPAT,
    };
  }

  /** "Exists archived" (0x9) after a download, fd-relative on the emulation backend. */
  async markArchived(rel: Buffer): Promise<void> {
    const hsm = this.#hsm;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.markArchived(this.#root.jobRoot, rel, this.#archiveId);
      return;
    }
    const jr = this.#root.jobRoot;
    const st = await this.#root.lstat(rel);
    if (!st?.isFile()) {
      throw new FsOperationError(
        "lstat",
        jr.display(rel),
        st ? "EINVAL" : "ENOENT",
        "not a regular file",
      );
    }
    const value = await jr.getXattr(rel, hsm.xattr);
    const previous = value && value.length >= 24 ? decodeHsmAttrs(value) : undefined;
    const keep = HsmFlag.NoRelease | HsmFlag.NoArchive;
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({
        compat: previous?.compat ?? HSM_COMPAT,
        flags: ARCHIVED_FLAGS | ((previous?.flags ?? 0) & keep),
        archiveId: BigInt(this.#archiveId),
        archiveVersion: previous?.archiveVersion ?? 0n,
      }),
    );
  }
}
