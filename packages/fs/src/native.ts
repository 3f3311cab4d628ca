import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

import { DependencyError, errorCode, errorMessage } from "@hsmfleet/core";

/** Opaque directory handle (an N-API external owning a DIR*; closed by closeDir or on GC). */
declare const dirHandleBrand: unique symbol;
export interface NativeDirHandle {
  readonly [dirHandleBrand]: true;
}

/**
 * Raw binding of build/Release/hsmfleet_fs.node (native/dirscan.c). Every call runs on the libuv
 * threadpool. Rejections are Errors with `errno` (positive number) and `syscall`; callers turn
 * them into FsOperationError.
 */
export interface NativeBinding {
  /** Batch size must be a positive 32-bit integer; xattr null = don't read xattrs. */
  opendir(
    path: Buffer,
    xattr: string | null,
    batchSize: number,
    rootFd?: number,
    fallback?: boolean,
    /** Both or neither: the xattr is read only of regular files with a size within them. */
    xattrMinSize?: number,
    xattrMaxSize?: number,
  ): Promise<NativeDirHandle>;
  /** The same, with the first batch read in the same threadpool job (null: it had no entries). */
  opendir(
    path: Buffer,
    xattr: string | null,
    batchSize: number,
    rootFd: number | undefined,
    fallback: boolean | undefined,
    xattrMinSize: number | undefined,
    xattrMaxSize: number | undefined,
    readFirst: true,
  ): Promise<[NativeDirHandle, Buffer | null]>;
  /**
   * Several directories beneath `rootFd`, each opened and its first batch read, one after the
   * other in ONE threadpool job, until about `batchSize` entries were read in all. Per directory:
   * undefined (not reached), an errno Error (its open failed), null or a Buffer (read whole: no
   * entries, or its only batch), or [handle, first batch or null] (more to read).
   */
  opendirs(
    rels: Buffer[],
    xattr: string | null,
    batchSize: number,
    rootFd: number,
    fallback: boolean,
    xattrMinSize: number | undefined,
    xattrMaxSize: number | undefined,
  ): Promise<Array<undefined | Error | null | Buffer | [NativeDirHandle, Buffer | null]>>;
  /** One packed batch (see dir-reader.ts), or null when there is nothing more to read. */
  readBatch(handle: NativeDirHandle): Promise<Buffer | null>;
  closeDir(handle: NativeDirHandle): Promise<void>;
  /** A packed batch holding one record with an empty name. */
  statPath(path: Buffer, xattr: string | null): Promise<Buffer>;
  /** null when the attribute does not exist (ENODATA). */
  getXattr(path: Buffer, name: string): Promise<Buffer | null>;
  setXattr(path: Buffer, name: string, value: Buffer): Promise<void>;
  removeXattr(path: Buffer, name: string): Promise<void>;
  /**
   * HSM release of every path (relative to the directory fd `rootFd`, reached beneath it with no
   * symlink followed; `fallback` forces the openat walk) in one threadpool job
   * (native/hsmbatch.c): one 32-byte record per path, in order (see release-batch.ts).
   */
  releaseBatch(rootFd: number, rels: Buffer[], xattr: string, fallback: boolean): Promise<Buffer>;
  /** FIDs of every path beneath `rootFd` in one threadpool job (flags: FID_*); see fid-batch.ts. */
  fidBatch(rootFd: number, rels: Buffer[], flags: number): Promise<Buffer>;
  /** One small file in one job (native/readfile.c); results in `out`'s header (read-small-file.ts). */
  readSmallFile(path: Buffer, out: Buffer, flags: number): Promise<void>;
  /** The same for several files in one job, one after the other. */
  readSmallFiles(paths: Buffer[], outs: Buffer[], flags: number): Promise<void>;
  /** A native MD5 context (native/writehash.c); see write-hash.ts. */
  md5Create(): NativeMd5State;
  md5Digest(state: NativeMd5State): Buffer;
  /**
   * pwrite all of `data` at `position` and feed it to `state` (if any), in one job; `sparse`:
   * 4 KiB blocks (aligned on file offsets) of zeros are hashed, not written (they stay holes).
   */
  pwriteHash(
    fd: number,
    data: Uint8Array,
    position: number,
    state: NativeMd5State | null,
    sparse?: boolean,
  ): Promise<number>;
  /** Read [position, position+length) through a native buffer into `state`; the bytes read. */
  preadHash(fd: number, position: number, length: number, state: NativeMd5State): Promise<number>;
  /** pwrite all of `data` at 0 (`sparse` as pwriteHash), ftruncate to its length, its MD5 into md5Out; one job. */
  writeWhole(fd: number, data: Uint8Array, md5Out: Buffer | null, sparse?: boolean): Promise<void>;
  /** Same, every path relative to `rootFd` (native/beneath.c; flags bit 1: no openat2). */
  readSmallFilesBeneath(
    rootFd: number,
    rels: Buffer[],
    outs: Buffer[],
    flags: number,
  ): Promise<void>;
  /**
   * One operation beneath a job root fd (native/beneath.c; job-root.ts wraps it). Rejections carry
   * errno, syscall and `at` (bytes of rel resolved when it failed).
   */
  beneath(
    op: number,
    rootFd: number,
    rel: Buffer,
    nums: number[],
    data: Buffer | null,
    out: Buffer | null,
    name: string | null,
  ): Promise<number>;
  /**
   * A whole small file in one job beneath `rootFd` (native/smallfile.c; small-file.ts wraps it):
   * resolves 0, or 1 when the data's MD5 is not `md5` (nothing written).
   */
  smallFile(
    rootFd: number,
    rel: Buffer,
    data: Uint8Array | null,
    md5: Uint8Array | null,
    /** >= 208 bytes: results at [0, 80); on input the numbers at [80, 208), 16 f64 LE. */
    out: Buffer,
    /** [importXattr, hsmXattr] or, for a pending restore record, [.., .., pendingXattr, jobId]. */
    names: [string, string] | [string, string, string, string] | null,
    xattrs: Array<[string, Buffer]> | null,
  ): Promise<number>;
  /**
   * Several smallFile calls (their arguments, 1 to 256) in ONE job, one after the other; each
   * item's result, or the Error it would have rejected with.
   */
  smallFiles(
    items: Array<
      [
        number,
        Buffer,
        Uint8Array | null,
        Uint8Array | null,
        Buffer,
        [string, string] | [string, string, string, string] | null,
        Array<[string, Buffer]> | null,
      ]
    >,
  ): Promise<Array<number | Error>>;
  /**
   * Open, fstat (out[0,64)), fgetxattr of each name (out[64 + 4096 i), ≤ 4096 bytes), close, in
   * one job; each value's length, -1 when absent (native/smallfile.c).
   */
  inspectFile(
    rootFd: number,
    rel: Buffer,
    fallback: boolean,
    names: string[],
    out: Buffer,
  ): Promise<number[]>;
  /**
   * Several inspectFile calls (their arguments, 1 to 256) in ONE job, one after the other; each
   * item's lengths, or the Error it would have rejected with.
   */
  inspectFiles(
    items: Array<[number, Buffer, boolean, string[], Buffer]>,
  ): Promise<Array<number[] | Error>>;
  /** Whether openat2 is available (probed once). */
  beneathProbe(): boolean;
  /** An inotify instance read by a thread of its own (native/inotify.c); see inotify.ts. */
  inotifyStart(onRead: (errno: number | null, data: Buffer | null) => void): NativeInotifyHandle;
  /** Watches the directory open as `dirFd` (through /proc/self/fd); the watch descriptor. */
  inotifyAddWatch(handle: NativeInotifyHandle, dirFd: number, mask: number): number;
  inotifyRmWatch(handle: NativeInotifyHandle, wd: number): void;
  /** Ends the reader thread and closes the instance. */
  inotifyStop(handle: NativeInotifyHandle): void;
  /**
   * `bytes` of zeroed memory on transparent huge pages where the kernel has them (native/hugebuf.c;
   * pages touched on first use; freed on GC), or null when the mapping failed.
   */
  hugePageBuffer(bytes: number): Buffer | null;
  /**
   * A whole regular file read into huge-page memory, or null (missing, empty, not a regular file,
   * over 256 MiB, or changed while read). For the CLI's launcher (bin/hsmfleet.js).
   */
  readFileHuge(path: string): Buffer | null;
  /** The same as an external one-byte string, or null also when a byte is not ASCII. */
  readAsciiExternal(path: string): string | null;
  /** The newest mtime (ms) of dir/rel for every rel, or -1 when one cannot be stat'ed (mtimes.c). */
  newestMtimeMs(dir: string, rels: string[]): number;
  /**
   * Counts the plain records of a packed batch into `counts` (layout: TALLY_* in dir-batch.ts) and
   * writes the offsets of the others (directories, failed entries) to `others`; how many
   * (native/batch-tally.c; synchronous).
   */
  tallyBatch(batch: Uint8Array, counts: Float64Array, others: Uint32Array): number;
  /** Huge-page chunks holding finished directory batches now (native/batch-arena.c; for tests). */
  batchArenaChunks(): number;
  readonly formatVersion: number;
}

/** Opaque inotify instance (an N-API external owning the fd and its reader thread). */
declare const inotifyHandleBrand: unique symbol;
export interface NativeInotifyHandle {
  readonly [inotifyHandleBrand]: true;
}

/** Opaque MD5 context (an N-API external owning an EVP_MD_CTX; freed on GC). */
declare const md5StateBrand: unique symbol;
export interface NativeMd5State {
  readonly [md5StateBrand]: true;
}

/** Rejection shape of the binding. */
export interface NativeErrnoError extends Error {
  errno: number;
  syscall: string;
}

export const isNativeErrnoError = (err: unknown): err is NativeErrnoError =>
  err instanceof Error &&
  typeof (err as Partial<NativeErrnoError>).errno === "number" &&
  typeof (err as Partial<NativeErrnoError>).syscall === "string";

// Compiled layout: dist/src/native.js -> ../../build/Release/hsmfleet_fs.node
const ADDON_URL = new URL("../../build/Release/hsmfleet_fs.node", import.meta.url);
export const NATIVE_ADDON_PATH = fileURLToPath(ADDON_URL);

let cached: NativeBinding | undefined;

/** Loads the addon once; throws DependencyError with build instructions when it is unusable. */
export const loadNative = (): NativeBinding => {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    cached = require(NATIVE_ADDON_PATH) as NativeBinding;
  } catch (err) {
    if (errorCode(err) === "MODULE_NOT_FOUND") {
      throw new DependencyError(
        `the @hsmfleet/fs native addon is not built: run npm run build in packages/fs (needs g++, make, python3); missing ${NATIVE_ADDON_PATH}`,
        { cause: err },
      );
    }
    throw new DependencyError(
      `the @hsmfleet/fs native addon ${NATIVE_ADDON_PATH} failed to load (${errorMessage(err)}): rebuild it with npm run build in packages/fs (needs g++, make, python3)`,
      { cause: err },
    );
  }
  return cached;
};
