/**
 * The HSM surface hsmfleet drives, one interface over two backends:
 *
 *  - "hsm-emulation" (HsmEmulationBackend): Lustre's rules applied to an ordinary file system, with
 *    struct hsm_attrs in an xattr. Request methods apply the transition at once, as if a copytool
 *    had finished instantly; the action pipeline's workers move the data themselves and use the
 *    two-phase beginArchive/completeArchive and beginRestore/completeRestore around it.
 *  - "lustre" (LustreHsmBackend, lustre-backend.ts): reads trusted.hsm and calls `lfs`; the HSM
 *    coordinator and a copytool (AMLFS's, or hsmfleet's workers) carry the requests out.
 */
import type { HsmAttrs, HsmRequestName } from "@hsmfleet/core";

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
  state(absPath: Buffer): Promise<HsmAttrs | undefined>;
  /** `[0xseq:0xoid:0xver]`: lfs path2fid on Lustre, derived from (device, inode) on emulation. */
  fid(absPath: Buffer): Promise<string>;
  /** FIDs of many files at once (one `lfs path2fid` per batch on Lustre); each entry a FID or the error. */
  fids(absPaths: Buffer[]): Promise<(string | Error)[]>;
  archive(absPath: Buffer, options?: HsmRequestOptions): Promise<void>;
  /** Resolves false when the file already was released (nothing done), true otherwise. */
  release(absPath: Buffer): Promise<boolean>;
  restore(absPath: Buffer): Promise<void>;
  remove(absPath: Buffer): Promise<void>;
  /** Cancels requests in flight on the file (lfs hsm_cancel); a no-op on emulation. */
  cancel(absPath: Buffer): Promise<void>;
  /** One request over many files (lfs takes them in batches); the first refusal rejects. */
  requestMany(
    request: HsmRequestName,
    absPaths: Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void>;
  /** Batch restore (lfs hsm_restore), what `hsmfleet restore` uses on Lustre. */
  requestRestore(absPaths: Buffer[]): Promise<void>;
  /** lfs hsm_set / hsm_clear: set and clear flags (policy bits, LOST, …), optionally the archive id. */
  setFlags(absPath: Buffer, set: number, clear: number, archiveId?: number): Promise<void>;
  /** A released stub of `size` bytes (lfs hsm_import). */
  importReleased(absPath: Buffer, size: number, archiveId: number): Promise<void>;
  /** Data written in full and in the archive: EXISTS|ARCHIVED. */
  markArchived(absPath: Buffer, archiveId: number): Promise<void>;
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
