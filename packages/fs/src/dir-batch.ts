/**
 * One packed batch of the native directory reader (native/dirscan.c), read in place: the records
 * are addressed by byte offset and their fields read from the buffer on demand, so a walk that
 * only counts or tests entries builds no object, name copy or BigInt per entry (issue 19: the
 * scan and the policy evaluation read most entries this way; `entry()` builds the full
 * `DirEntry` for the others).
 *
 * Packed batch (little-endian):
 *   0   u32 count        4  u16 format version (2)    6  u16 flags (bit0: end of directory)
 *   8   records, each 8-byte aligned:
 *     0  u32 recLen (header + name + zero padding to a multiple of 8)
 *     4  u32 nameLen     8  u64 size       16 u64 ino       24 i64 mtimeSec    32 u64 nlink
 *     40 u32 mtimeNsec   44 u32 mode (full st_mode)         48 u32 uid         52 u32 gid
 *     56 u8 type (1 file, 2 directory, 3 symlink, 4 other)  57 u8 flags (bit0 hsm, bit1 error,
 *                                                              bit2 hsm not read: size outside range)
 *     58 u8 errorOp (1 lstat, 2 getxattr)                   59 u8 reserved     60 i32 errno
 *     64 24 bytes raw struct hsm_attrs (valid when flags bit0)
 *     88 i64 atimeSec
 *     96 name bytes
 */
import { EntryType } from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import { errnoName } from "./errno.js";
import { loadNative } from "./native.js";

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
  /** A regular file whose xattr was not read: its size is outside the reader's `hsmSizes`. */
  hsmUnread?: true;
  /**
   * Set when lstat of this entry failed (stat fields are then 0; ENOENT means it vanished after
   * readdir), or when reading the xattr failed with anything but ENODATA/ENOTSUP (stat fields are
   * valid then; a value shorter than struct hsm_attrs is reported as EBADMSG).
   */
  error?: { operation: "lstat" | "getxattr"; code: string };
}

const FORMAT_VERSION = 2;
const BATCH_HEADER_SIZE = 8;
const BATCH_FLAG_EOF = 0x1;
const RECORD_HEADER_SIZE = 96;
const REC_FLAG_HSM = 0x1;
const REC_FLAG_ERROR = 0x2;
const REC_FLAG_HSM_UNREAD = 0x4;
const ERR_OP_LSTAT = 1;
const TWO_32 = 0x1_0000_0000;
const SLASH = 0x2f;

/**
 * Slots of the counts that `DirBatch.tally` adds to (native/batch-tally.c), in a Float64Array of
 * `TALLY.length`: regular files, their bytes, symlinks and other entries; regular files per size
 * bucket (sizeBucket's: 0 for size 0, else floor(log2(size)) + 1); per HSM flags & 0x7f (0: no
 * xattr); with the xattr not read; then how many flag/unread slots are listed and those slots in
 * the order they first became non-zero.
 */
export const TALLY = {
  files: 0,
  bytes: 1,
  symlinks: 2,
  other: 3,
  buckets: 4,
  bucketCount: 65,
  flags: 69,
  flagCount: 128,
  unread: 197,
  orderLength: 198,
  order: 199,
  length: 328,
} as const;

export class DirBatch {
  /** Offset of the first record. */
  static readonly FIRST = BATCH_HEADER_SIZE;
  /** Records in the batch. */
  readonly count: number;
  /** The end of the directory was reached (the native side already closed it). */
  readonly eof: boolean;
  readonly #buf: Buffer;
  readonly #view: DataView;

  constructor(buf: Buffer) {
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const version = view.getUint16(4, true);
    if (version !== FORMAT_VERSION) {
      throw new Error(
        `@hsmfleet/fs native addon speaks batch format ${version}, expected ${FORMAT_VERSION}: rebuild it (npm run build in packages/fs)`,
      );
    }
    this.#buf = buf;
    this.#view = view;
    this.count = view.getUint32(0, true);
    this.eof = (view.getUint16(6, true) & BATCH_FLAG_EOF) !== 0;
  }

  /** Offset of the record after the one at `off`. */
  next(off: number): number {
    return off + this.#view.getUint32(off, true);
  }

  type(off: number): EntryType {
    return this.#view.getUint8(off + 56) as EntryType;
  }

  /** lstat or the xattr read failed: read this record with entry() (its `error`). */
  failed(off: number): boolean {
    return (this.#view.getUint8(off + 57) & REC_FLAG_ERROR) !== 0;
  }

  size(off: number): number {
    return this.#view.getUint32(off + 8, true) + this.#view.getUint32(off + 12, true) * TWO_32;
  }

  uid(off: number): number {
    return this.#view.getUint32(off + 48, true);
  }

  gid(off: number): number {
    return this.#view.getUint32(off + 52, true);
  }

  mtimeSec(off: number): number {
    return this.#view.getUint32(off + 24, true) + this.#view.getInt32(off + 28, true) * TWO_32;
  }

  mtimeNsec(off: number): number {
    return this.#view.getUint32(off + 40, true);
  }

  atimeSec(off: number): number {
    return this.#view.getUint32(off + 88, true) + this.#view.getInt32(off + 92, true) * TWO_32;
  }

  /** Whether the HSM xattr was read (present and whole). */
  hasHsm(off: number): boolean {
    return (this.#view.getUint8(off + 57) & REC_FLAG_HSM) !== 0;
  }

  /** A regular file whose xattr was not read (its size is outside the reader's hsmSizes). */
  hsmUnread(off: number): boolean {
    return (this.#view.getUint8(off + 57) & REC_FLAG_HSM_UNREAD) !== 0;
  }

  /** struct hsm_attrs' flags; 0 without the xattr. */
  hsmFlags(off: number): number {
    return this.hasHsm(off) ? this.#view.getUint32(off + 68, true) : 0;
  }

  /** struct hsm_attrs' archive version; 0n without the xattr. */
  hsmArchiveVersion(off: number): bigint {
    return this.hasHsm(off) ? this.#view.getBigUint64(off + 80, true) : 0n;
  }

  /** The entry's root-relative path: `dir` + "/" + its name (its name alone when `dir` is ""). */
  path(off: number, dir: Buffer): Buffer {
    const nameLen = this.#view.getUint32(off + 4, true);
    const nameStart = off + RECORD_HEADER_SIZE;
    if (dir.length === 0) return Buffer.from(this.#buf.subarray(nameStart, nameStart + nameLen));
    const out = Buffer.allocUnsafe(dir.length + 1 + nameLen);
    dir.copy(out, 0);
    out[dir.length] = SLASH;
    this.#buf.copy(out, dir.length + 1, nameStart, nameStart + nameLen);
    return out;
  }

  /** The record as a DirEntry (its name copied: a retained name must not pin the whole batch). */
  entry(off: number): DirEntry {
    const view = this.#view;
    const nameLen = view.getUint32(off + 4, true);
    const nameStart = off + RECORD_HEADER_SIZE;
    const flags = view.getUint8(off + 57);
    const entry: DirEntry = {
      name: Buffer.from(this.#buf.subarray(nameStart, nameStart + nameLen)),
      type: this.type(off),
      size: this.size(off),
      mode: view.getUint32(off + 44, true),
      uid: this.uid(off),
      gid: this.gid(off),
      nlink: view.getUint32(off + 32, true) + view.getUint32(off + 36, true) * TWO_32,
      ino: view.getBigUint64(off + 16, true),
      mtimeSec: this.mtimeSec(off),
      mtimeNsec: this.mtimeNsec(off),
      atimeSec: this.atimeSec(off),
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
    if ((flags & REC_FLAG_HSM_UNREAD) !== 0) entry.hsmUnread = true;
    if ((flags & REC_FLAG_ERROR) !== 0) {
      entry.error = {
        operation: view.getUint8(off + 58) === ERR_OP_LSTAT ? "lstat" : "getxattr",
        code: errnoName(view.getInt32(off + 60, true)),
      };
    }
    return entry;
  }

  /**
   * Adds every plain record (isPlainRecord) to `counts` (TALLY's layout) in one native call and
   * returns the offsets of the others — directories and failed entries — in order. `scratch` is
   * where the native call writes them (grown when the batch has more records); the result is a
   * copy.
   */
  tally(counts: Float64Array, scratch: { others: Uint32Array }): Uint32Array {
    if (scratch.others.length < this.count) scratch.others = new Uint32Array(this.count);
    const n = loadNative().tallyBatch(this.#buf, counts, scratch.others);
    return scratch.others.slice(0, n);
  }

  /** Every record as a DirEntry, in order. */
  entries(): DirEntry[] {
    const out = new Array<DirEntry>(this.count);
    for (let i = 0, off = DirBatch.FIRST; i < this.count; i++, off = this.next(off))
      out[i] = this.entry(off);
    return out;
  }
}

/** A regular file, a symlink or another non-directory whose lstat (and xattr read) succeeded. */
export const isPlainRecord = (batch: DirBatch, off: number): boolean =>
  batch.type(off) !== EntryType.Directory && !batch.failed(off);
