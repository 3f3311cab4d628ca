/**
 * The HSM surface hsmfleet drives, one interface over two backends:
 *
 *  - "hsm-emulation" (HsmEmulationBackend): Lustre's rules applied to an ordinary file system, with
 *    struct hsm_attrs in an xattr. Request methods apply the transition at once, as if a copytool
 *    had finished instantly; the action pipeline's workers move the data themselves and use the
 *    two-phase beginArchive/completeArchive and beginRestore/completeRestore around it.
 *  - "lustre" (LustreHsmBackend, lustre-backend.ts): reads trusted.hsm and calls `lfs`; the HSM
 *    coordinator and a copytool (AMLFS's, or hsmfleet's workers) carry the requests out.
 *
 * Every operation names its file by a job root and a path relative to it (`root`, `rel`: raw
 * bytes, '/'-separated, no empty, '.' or '..' segment), never by an absolute path: the file is
 * reached beneath the root's directory fd with no symlink followed anywhere (JobRoot, openat2
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS or the O_NOFOLLOW walk). A directory of the tree swapped for
 * a symlink fails the operation with UnsafePathError naming it; nothing outside the root is read,
 * changed, released or restored (issue 14's class; docs/security.md "Path safety").
 */
import type { HsmAttrs, HsmRequestName } from "@hsmfleet/core";

import type { JobRoot } from "./job-root.js";

export type HsmBackendKind = "hsm-emulation" | "lustre";
export const HSM_BACKEND_KINDS: readonly HsmBackendKind[] = ["hsm-emulation", "lustre"];

export interface HsmRequestOptions {
  /** Archive id for archive requests (lfs --archive); default 1. */
  archiveId?: number | undefined;
}

export interface HsmBackend {
  readonly kind: HsmBackendKind;
  /** Xattr holding struct hsm_attrs. */
  readonly xattr: string;
  /** hsm_attrs of the file, undefined when it has none ("new"). Emulation detects writes here. */
  state(root: JobRoot, rel: Buffer): Promise<HsmAttrs | undefined>;
  /** `[0xseq:0xoid:0xver]`: the file's Lustre FID, derived from (device, inode) on emulation. */
  fid(root: JobRoot, rel: Buffer): Promise<string>;
  /** FIDs of many files at once (native batches); each entry a FID or the error. */
  fids(root: JobRoot, rels: readonly Buffer[]): Promise<(string | Error)[]>;
  archive(root: JobRoot, rel: Buffer, options?: HsmRequestOptions): Promise<void>;
  /** Resolves false when the file already was released (nothing done), true otherwise. */
  release(root: JobRoot, rel: Buffer): Promise<boolean>;
  restore(root: JobRoot, rel: Buffer): Promise<void>;
  remove(root: JobRoot, rel: Buffer): Promise<void>;
  /** Cancels requests in flight on the file (lfs hsm_cancel); a no-op on emulation. */
  cancel(root: JobRoot, rel: Buffer): Promise<void>;
  /** One request over many files (lfs takes them in batches); the first refusal rejects. */
  requestMany(
    request: HsmRequestName,
    root: JobRoot,
    rels: readonly Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void>;
  /** Batch restore (lfs hsm_restore), what `hsmfleet restore` uses on Lustre. */
  requestRestore(root: JobRoot, rels: readonly Buffer[]): Promise<void>;
  /** lfs hsm_set / hsm_clear: set and clear flags (policy bits, LOST, …), optionally the archive id. */
  setFlags(
    root: JobRoot,
    rel: Buffer,
    set: number,
    clear: number,
    archiveId?: number,
  ): Promise<void>;
  /** A released stub of `size` bytes (lfs hsm_import). */
  importReleased(root: JobRoot, rel: Buffer, size: number, archiveId: number): Promise<void>;
  /** Data written in full and in the archive: EXISTS|ARCHIVED. */
  markArchived(root: JobRoot, rel: Buffer, archiveId: number): Promise<void>;
}

export interface OpenHsmBackendOptions {
  backend: HsmBackendKind;
  /** Xattr for hsm_attrs; default "trusted.hsm". */
  xattr?: string | undefined;
  /** lfs binary for the lustre backend; default "lfs" (found on PATH). */
  lfsPath?: string | undefined;
}

/** What the file looked like when an archive started; compared again when it completes. */
export interface DataSnapshot {
  size: number;
  mtimeNs: bigint;
  /** Data version recorded as hsm_arch_ver (see dataVersion). */
  version: bigint;
  dev: bigint;
  ino: bigint;
}
