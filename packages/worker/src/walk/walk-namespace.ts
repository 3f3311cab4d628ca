import { resolveUnderRoot } from "@hsmfleet/core";
import { jobRootFor, openDir, openDirsBeneath } from "@hsmfleet/fs";
import type { DirReader, OpenedDir } from "@hsmfleet/fs";

/** How the walk reads one directory of a job's tree. */
export interface DirectoryReadOptions {
  /** xattr holding struct hsm_attrs; undefined: none read. */
  hsmXattr: string | undefined;
  /** Entries per batch. */
  batchSize: number;
  /** Read the xattr only of regular files with a size in this range (fs DirReadOptions). */
  hsmSizes?: { min: number; max: number } | undefined;
}

/**
 * The file-system side of the walk: lists a directory of the job's tree as batches of lstat'ed
 * entries. The default, `posixNamespace`, reads the real tree beneath the job root's fd; the
 * benchmarks put a synthetic tree here (bench/synthetic-namespace.ts), never a user command.
 */
export interface WalkNamespace {
  /** Shown in logs: "posix" or what the benchmark calls its tree. */
  readonly name: string;
  /** Opens `dir` (root-relative, "" = the root) of the tree at `root`; rejects FsOperationError. */
  openDirectory(root: Buffer, dir: Buffer, options: DirectoryReadOptions): Promise<DirReader>;
  /**
   * Optional: opens several directories of the tree (a walk shard's) and reads their first
   * batches in one go. Per directory: an OpenedDir, the error openDirectory would reject with, or
   * undefined (not opened: call openDirectory).
   */
  openDirectories?(
    root: Buffer,
    dirs: readonly Buffer[],
    options: DirectoryReadOptions,
  ): Promise<Array<OpenedDir | Error | undefined>>;
}

/** The real tree: native reader, beneath the job root's fd, no symlink followed. */
export const posixNamespace: WalkNamespace = {
  name: "posix",
  openDirectory: async (root, dir, options) =>
    openDir(resolveUnderRoot(root, dir), {
      hsmXattr: options.hsmXattr,
      batchSize: options.batchSize,
      hsmSizes: options.hsmSizes,
      // Beneath the job root's fd: a directory swapped for a symlink is refused, never listed.
      beneath: { rootFd: (await jobRootFor(root)).fd, rel: dir },
    }),
  // One threadpool job for a shard's directories (fs openDirsBeneath), beneath the same root fd.
  openDirectories: async (root, dirs, options) =>
    openDirsBeneath(
      (await jobRootFor(root)).fd,
      dirs,
      dirs.map((dir) => resolveUnderRoot(root, dir)),
      { hsmXattr: options.hsmXattr, batchSize: options.batchSize, hsmSizes: options.hsmSizes },
    ),
};
