/**
 * Fast directory reader over the native addon (native/dirscan.c). The per-entry work — readdir,
 * fstatat(AT_SYMLINK_NOFOLLOW) and the optional lgetxattr of the HSM attribute — happens in C on
 * the libuv threadpool; one packed Buffer per batch crosses into JS and is parsed here.
 *
 * Packed batch (little-endian):
 *   0   u32 count        4  u16 format version (2)    6  u16 flags (bit0: end of directory)
 *   8   records, each 8-byte aligned:
 *     0  u32 recLen (header + name + zero padding to a multiple of 8)
 *     4  u32 nameLen     8  u64 size       16 u64 ino       24 i64 mtimeSec    32 u64 nlink
 *     40 u32 mtimeNsec   44 u32 mode (full st_mode)         48 u32 uid         52 u32 gid
 *     56 u8 type (1 file, 2 directory, 3 symlink, 4 other)  57 u8 flags (bit0 hsm, bit1 error)
 *     58 u8 errorOp (1 lstat, 2 getxattr)                   59 u8 reserved     60 i32 errno
 *     64 24 bytes raw struct hsm_attrs (valid when flags bit0)
 *     88 i64 atimeSec
 *     96 name bytes
 */
import type { EntryType, HsmAttrs } from "@hsmfleet/core";
import { FsOperationError, displayPath } from "@hsmfleet/core";

import { checkPath, checkXattrName, errnoName, toFsError } from "./errno.js";
import type { NativeDirHandle } from "./native.js";
import { UnsafePathError, checkRelativePath, openat2Disabled } from "./job-root.js";
import { isNativeErrnoError, loadNative } from "./native.js";
import { pauseBeforeOpenForTest } from "./test-seam.js";

export interface DirEntry {
  /** Raw name bytes (never decoded). */
  name: Buffer;
  /** From lstat (fstatat with AT_SYMLINK_NOFOLLOW). When lstat failed: the d_type hint, Other if unknown. */
  type: EntryType;
  size: number;
  /** Full st_mode: file type bits and permissions. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  ino: bigint;
  mtimeSec: number;
  mtimeNsec: number;
  /** Last access, seconds (policies order releases by it). Absent where the entry was not read by the native reader. */
  atimeSec?: number;
  /** Decoded from the xattr when present (only read for regular files, and only when an xattr name was given). */
  hsm?: HsmAttrs;
  /**
   * Set when lstat of this entry failed (stat fields are then 0; ENOENT means it vanished after
   * readdir), or when reading the xattr failed with anything but ENODATA/ENOTSUP (stat fields are
   * valid then; a value shorter than struct hsm_attrs is reported as EBADMSG).
   */
  error?: { operation: "lstat" | "getxattr"; code: string };
}

export interface DirReadOptions {
  /** xattr holding struct hsm_attrs; undefined = don't read xattrs. Typical: "trusted.hsm". */
  hsmXattr?: string | undefined;
  /** Entries per read() batch. Default 4096. */
  batchSize?: number;
  /**
   * Open the directory beneath a job root fd by `rel` (empty: the root itself), with no symlink
   * followed on any component (native/beneath.c); `path` is then only used in messages. Xattrs are
   * read through the directory's fd. Default: `path` is opened with O_NOFOLLOW on its last
   * component only.
   */
  beneath?: { rootFd: number; rel: Buffer } | undefined;
}

export interface DirReader {
  /** Next batch (at most batchSize entries, "." and ".." skipped), or null at the end. Runs on the threadpool. */
  read(): Promise<DirEntry[] | null>;
  close(): Promise<void>;
}

export const DEFAULT_BATCH_SIZE = 4096;
const MAX_BATCH_SIZE = 1 << 20;

const FORMAT_VERSION = 2;
const BATCH_HEADER_SIZE = 8;
const BATCH_FLAG_EOF = 0x1;
const RECORD_HEADER_SIZE = 96;
const REC_FLAG_HSM = 0x1;
const REC_FLAG_ERROR = 0x2;
const ERR_OP_LSTAT = 1;
const TWO_32 = 0x1_0000_0000;

interface ParsedBatch {
  entries: DirEntry[];
  eof: boolean;
}

const parseBatch = (buf: Buffer): ParsedBatch => {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const count = view.getUint32(0, true);
  const version = view.getUint16(4, true);
  if (version !== FORMAT_VERSION) {
    throw new Error(
      `@hsmfleet/fs native addon speaks batch format ${version}, expected ${FORMAT_VERSION}: rebuild it (npm run build in packages/fs)`,
    );
  }
  const eof = (view.getUint16(6, true) & BATCH_FLAG_EOF) !== 0;
  const entries = new Array<DirEntry>(count);
  let off = BATCH_HEADER_SIZE;
  for (let i = 0; i < count; i++) {
    const recLen = view.getUint32(off, true);
    const nameLen = view.getUint32(off + 4, true);
    const nameStart = off + RECORD_HEADER_SIZE;
    const flags = view.getUint8(off + 57);
    const entry: DirEntry = {
      // A copy: a retained name must not pin the whole batch buffer.
      name: Buffer.from(buf.subarray(nameStart, nameStart + nameLen)),
      type: view.getUint8(off + 56) as EntryType,
      size: view.getUint32(off + 8, true) + view.getUint32(off + 12, true) * TWO_32,
      mode: view.getUint32(off + 44, true),
      uid: view.getUint32(off + 48, true),
      gid: view.getUint32(off + 52, true),
      nlink: view.getUint32(off + 32, true) + view.getUint32(off + 36, true) * TWO_32,
      ino: view.getBigUint64(off + 16, true),
      mtimeSec: view.getUint32(off + 24, true) + view.getInt32(off + 28, true) * TWO_32,
      mtimeNsec: view.getUint32(off + 40, true),
      atimeSec: view.getUint32(off + 88, true) + view.getInt32(off + 92, true) * TWO_32,
    };
    if ((flags & REC_FLAG_HSM) !== 0) {
      // struct hsm_attrs: u32 compat, u32 flags, u64 archive id, u64 archive version (as decodeHsmAttrs).
      entry.hsm = {
        compat: view.getUint32(off + 64, true),
        flags: view.getUint32(off + 68, true),
        archiveId: view.getBigUint64(off + 72, true),
        archiveVersion: view.getBigUint64(off + 80, true),
      };
    }
    if ((flags & REC_FLAG_ERROR) !== 0) {
      entry.error = {
        operation: view.getUint8(off + 58) === ERR_OP_LSTAT ? "lstat" : "getxattr",
        code: errnoName(view.getInt32(off + 60, true)),
      };
    }
    entries[i] = entry;
    off += recLen;
  }
  return { entries, eof };
};

const normalizeXattr = (
  name: string | undefined,
  operation: string,
  path: Buffer,
): string | null => {
  if (name === undefined) return null;
  checkXattrName(name, operation, path);
  return name;
};

class NativeDirReader implements DirReader {
  readonly #handle: NativeDirHandle;
  readonly #path: Buffer;
  /** Serializes read()/close(): the native handle runs one operation at a time. */
  #tail: Promise<unknown> = Promise.resolve();
  #eof = false;
  #closed = false;

  constructor(handle: NativeDirHandle, path: Buffer) {
    this.#handle = handle;
    this.#path = path;
  }

  read(): Promise<DirEntry[] | null> {
    return this.#enqueue(() => this.#readNow());
  }

  close(): Promise<void> {
    return this.#enqueue(() => this.#closeNow());
  }

  #enqueue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(op, op);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #readNow(): Promise<DirEntry[] | null> {
    if (this.#closed) {
      throw new FsOperationError("readdir", displayPath(this.#path), "EBADF", "reader is closed");
    }
    if (this.#eof) return null;
    let buf: Buffer | null;
    try {
      buf = await loadNative().readBatch(this.#handle);
    } catch (err) {
      throw toFsError(err, "readdir", this.#path);
    }
    if (buf === null) {
      this.#eof = true;
      return null;
    }
    const { entries, eof } = parseBatch(buf);
    if (eof) this.#eof = true; // the native side already closed the DIR
    return entries.length > 0 ? entries : null;
  }

  async #closeNow(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await loadNative().closeDir(this.#handle);
    } catch (err) {
      throw toFsError(err, "closedir", this.#path);
    }
  }
}

/** Opens a directory by raw path bytes with O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC. Rejects with FsOperationError(operation "opendir", code ENOENT/EACCES/ENOTDIR/ELOOP...) */
export const openDir = async (path: Buffer, options?: DirReadOptions): Promise<DirReader> => {
  checkPath(path, "opendir");
  const xattr = normalizeXattr(options?.hsmXattr, "opendir", path);
  const batchSize = options?.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
    throw new RangeError(`batchSize must be an integer in 1..${MAX_BATCH_SIZE}, got ${batchSize}`);
  }
  const pathCopy = Buffer.from(path);
  const beneath = options?.beneath;
  let handle: NativeDirHandle;
  try {
    if (beneath) {
      if (beneath.rel.length > 0) checkRelativePath(beneath.rel);
      await pauseBeforeOpenForTest(beneath.rel);
      handle = await loadNative().opendir(
        Buffer.from(beneath.rel),
        xattr,
        batchSize,
        beneath.rootFd,
        openat2Disabled(),
      );
    } else handle = await loadNative().opendir(pathCopy, xattr, batchSize);
  } catch (err) {
    if (isNativeErrnoError(err) && err.errno === 40) {
      throw new UnsafePathError(
        displayPath(pathCopy),
        "a component of its path is a symlink (not followed)",
        "opendir",
      );
    }
    throw toFsError(err, "opendir", pathCopy);
  }
  return new NativeDirReader(handle, pathCopy);
};

const SLASH = 0x2f;

/** Last path component ("a/b/" -> "b"; "/" -> "/"). */
const lastComponent = (path: Buffer): Buffer => {
  let end = path.length;
  while (end > 1 && path[end - 1] === SLASH) end--;
  const start = path.lastIndexOf(SLASH, end - 1) + 1;
  if (start >= end) return Buffer.from(path.subarray(0, end));
  return Buffer.from(path.subarray(start, end));
};

/** lstat one path (raw bytes) returning the same shape (name = last component) plus hsm when asked; rejects FsOperationError("lstat"). */
export const statEntry = async (
  path: Buffer,
  options?: { hsmXattr?: string },
): Promise<DirEntry> => {
  checkPath(path, "lstat");
  const xattr = normalizeXattr(options?.hsmXattr, "lstat", path);
  let buf: Buffer;
  try {
    buf = await loadNative().statPath(path, xattr);
  } catch (err) {
    throw toFsError(err, "lstat", path);
  }
  const entry = parseBatch(buf).entries[0];
  if (entry === undefined) throw new Error("@hsmfleet/fs native statPath returned no record");
  entry.name = lastComponent(path);
  return entry;
};
