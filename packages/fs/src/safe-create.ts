/**
 * Creating entries under an import/restore target root without ever leaving it and without
 * following a symlink. Relative paths are raw bytes ('/'-separated, as core's pathForBlobName
 * produces them), checked syntactically (no empty, "." or ".." segment, no NUL, not absolute).
 *
 * Every operation goes through the target's JobRoot (job-root.ts): the parent directory is
 * reached from a directory fd of the root with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
 * or an openat(O_DIRECTORY | O_NOFOLLOW) walk, and the final component is used relative to that
 * fd with calls that never follow it (O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, unlinkat,
 * fstatat, fchown/fchmod/futimens on an fd of the entry). There is no check-then-use window: a
 * parent directory that another process swaps for a symlink at any moment fails that entry with
 * UnsafePathError (ELOOP) instead of being followed (issue 14; docs/security.md "Path safety").
 *
 * The root itself is trusted configuration: symlinks in the root's own path are allowed.
 */
import type { FileHandle } from "node:fs/promises";
import { constants } from "node:fs";

import { FsOperationError, displayPath } from "@hsmfleet/core";

import { JobRoot, UnsafePathError, checkRelativePath, isDirectoryMode } from "./job-root.js";
import type { BeneathStat, EntryAttributes } from "./job-root.js";

export { UnsafePathError };
export type { EntryAttributes };

/** Kept for callers that pass it; the fd-relative walk needs no directory cache. */
export const DEFAULT_DIR_CACHE_SIZE = 0;

export interface TargetRootOptions {
  /** Ignored (no cache is needed since every operation is fd-relative). */
  dirCacheSize?: number;
}

/** lstat result with the predicates and bigint fields of node's BigIntStats that callers use. */
export interface EntryStat {
  dev: bigint;
  ino: bigint;
  mode: bigint;
  uid: number;
  gid: number;
  size: bigint;
  blocks: bigint;
  mtimeSec: number;
  mtimeNsec: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}

const S_IFMT = 0o170000;
const toEntryStat = (st: BeneathStat): EntryStat => ({
  dev: st.dev,
  ino: st.ino,
  mode: BigInt(st.mode),
  uid: st.uid,
  gid: st.gid,
  size: BigInt(st.size),
  blocks: st.blocks,
  mtimeSec: st.mtimeSec,
  mtimeNsec: st.mtimeNsec,
  isFile: () => (st.mode & S_IFMT) === 0o100000,
  isDirectory: () => (st.mode & S_IFMT) === 0o040000,
  isSymbolicLink: () => (st.mode & S_IFMT) === 0o120000,
});

/** An import target directory. All entry paths are relative to it. */
export class TargetRoot {
  readonly root: string;
  /** The fd-relative operations (also for HSM state and downloads). */
  readonly jobRoot: JobRoot;

  private constructor(jobRoot: JobRoot) {
    this.root = jobRoot.path;
    this.jobRoot = jobRoot;
  }

  /** Opens `root` (absolute, an existing directory). Close it with close() when done. */
  static async open(root: string, _options?: TargetRootOptions): Promise<TargetRoot> {
    return new TargetRoot(await JobRoot.open(root));
  }

  /** A TargetRoot over an already open JobRoot (shared with other users of that root). */
  static of(jobRoot: JobRoot): TargetRoot {
    return new TargetRoot(jobRoot);
  }

  close(): void {
    this.jobRoot.close();
  }

  /** Absolute path bytes of `rel`, for messages only (checked syntactically). */
  absolute(rel: Buffer): Buffer {
    checkRelativePath(rel);
    return this.jobRoot.absolute(rel);
  }

  /**
   * mkdir -p of the parents of `rel` (0o755, umask applies). Implicit directories are never made
   * world-writable; the import sets a directory's final mode from its blob's metadata.
   */
  async ensureParents(rel: Buffer): Promise<void> {
    await this.jobRoot.ensureParents(rel, 0o755);
  }

  /**
   * Creates directory `rel` (parents must exist). "existed" when it is already a real directory;
   * UnsafePathError when it is a symlink; FsOperationError EEXIST when it is something else.
   */
  async mkdir(rel: Buffer, mode: number): Promise<"created" | "existed"> {
    try {
      await this.jobRoot.mkdir(rel, mode);
      return "created";
    } catch (err) {
      if (!(err instanceof FsOperationError && err.code === "EEXIST")) throw err;
    }
    const st = await this.jobRoot.lstat(rel);
    if (st && (st.mode & S_IFMT) === 0o120000) {
      throw new UnsafePathError(this.jobRoot.display(rel), "exists as a symlink, not a directory");
    }
    if (!st || !isDirectoryMode(st)) {
      throw new FsOperationError(
        "mkdir",
        this.jobRoot.display(rel),
        "EEXIST",
        "exists and is not a directory",
      );
    }
    return "existed";
  }

  /** Creates symlink `rel` with `target` stored verbatim. EEXIST when the name exists. */
  async symlink(rel: Buffer, target: Buffer): Promise<void> {
    if (!Buffer.isBuffer(target)) throw new TypeError("symlink target must be a Buffer");
    await this.jobRoot.symlink(rel, target);
  }

  /**
   * Opens a new regular file exclusively (O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY, `mode` subject to
   * the umask). Parents must exist. FsOperationError EEXIST when the name exists (any type).
   */
  async createFile(rel: Buffer, mode: number): Promise<FileHandle> {
    const { handle } = await this.jobRoot.openFile(
      rel,
      constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY,
      mode,
    );
    return handle;
  }

  /**
   * Opens an existing regular file for reading and writing (nothing followed). Anything that is
   * not a regular file is refused with FsOperationError EINVAL.
   */
  async openExisting(rel: Buffer): Promise<FileHandle> {
    const { handle, stat } = await this.jobRoot.openFile(
      rel,
      constants.O_RDWR | constants.O_NONBLOCK,
    );
    if ((stat.mode & S_IFMT) !== 0o100000) {
      await handle.close();
      throw new FsOperationError("open", this.jobRoot.display(rel), "EINVAL", "not a regular file");
    }
    return handle;
  }

  /** Target of symlink `rel` as raw bytes (the link itself is read, never followed). */
  async readlink(rel: Buffer): Promise<Buffer> {
    return this.jobRoot.readlink(rel);
  }

  /** lstat of `rel`, or undefined when it (or a parent) does not exist. Never follows. */
  async lstat(rel: Buffer): Promise<EntryStat | undefined> {
    const st = await this.jobRoot.lstat(rel);
    return st ? toEntryStat(st) : undefined;
  }

  /** Removes a file, symlink or other non-directory (EISDIR for directories). */
  async unlink(rel: Buffer): Promise<void> {
    await this.jobRoot.unlink(rel);
  }

  /**
   * Sets owner, permission bits (skipped for symlinks) and mtime = atime on `rel` itself, never
   * through a symlink.
   */
  async setAttributes(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    await this.jobRoot.setAttributes(rel, attrs);
  }

  /** Printable absolute path. */
  display(rel: Buffer): string {
    return displayPath(this.jobRoot.absolute(rel));
  }
}
