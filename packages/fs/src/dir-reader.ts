/**
 * Fast directory reader over the native addon (native/dirscan.c). The per-entry work — readdir,
 * fstatat(AT_SYMLINK_NOFOLLOW) and the optional lgetxattr of the HSM attribute — happens in C on
 * the libuv threadpool; one packed Buffer per batch crosses into JS (dir-batch.ts reads it).
 */
import { FsOperationError, displayPath } from "@hsmfleet/core";

import { DirBatch } from "./dir-batch.js";
import type { DirEntry } from "./dir-batch.js";
import { checkPath, checkXattrName, toFsError } from "./errno.js";
import type { NativeDirHandle } from "./native.js";
import { UnsafePathError, checkRelativePath, openat2Disabled } from "./job-root.js";
import { isNativeErrnoError, loadNative } from "./native.js";
import { pauseBeforeOpenArmed, pauseBeforeOpenForTest } from "./test-seam.js";

export type { DirEntry };

export interface DirReadOptions {
  /** xattr holding struct hsm_attrs; undefined = don't read xattrs. Typical: "trusted.hsm". */
  hsmXattr?: string | undefined;
  /**
   * Read `hsmXattr` only of regular files whose size is within [min, max] (max may be Infinity);
   * the others come with `hsmUnread` (their HSM state is not known). Default: every regular file.
   * A caller that needs the state only at some sizes (a policy whose rules all select a size
   * range) saves a getxattr per other file — about half the kernel's work per file on ext4.
   */
  hsmSizes?: { min: number; max: number } | undefined;
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
  /**
   * The same batches as read(), packed (read in place, no object per entry); a reader either
   * offers it or not, and read() and readPacked() may not be mixed on one reader.
   */
  readPacked?(): Promise<DirBatch | null>;
  close(): Promise<void>;
}

export const DEFAULT_BATCH_SIZE = 4096;
const MAX_BATCH_SIZE = 1 << 20;

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
  /** The first batch, read with the open (one threadpool trip per small directory, not two). */
  #first: Buffer | undefined;
  /** Serializes read()/close(): the native handle runs one operation at a time. */
  #tail: Promise<unknown> = Promise.resolve();
  #eof = false;
  #closed = false;

  constructor(handle: NativeDirHandle, path: Buffer, first: Buffer | null) {
    this.#handle = handle;
    this.#path = path;
    // null: no entries yet, or a read error the native side keeps for the next read: ask again.
    this.#first = first ?? undefined;
  }

  async read(): Promise<DirEntry[] | null> {
    const batch = await this.readPacked();
    return batch === null ? null : batch.entries();
  }

  readPacked(): Promise<DirBatch | null> {
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

  async #readNow(): Promise<DirBatch | null> {
    if (this.#closed) {
      throw new FsOperationError("readdir", displayPath(this.#path), "EBADF", "reader is closed");
    }
    if (this.#eof) return null;
    let buf: Buffer | null = this.#first ?? null;
    this.#first = undefined;
    if (buf === null) {
      try {
        buf = await loadNative().readBatch(this.#handle);
      } catch (err) {
        throw toFsError(err, "readdir", this.#path);
      }
    }
    if (buf === null) {
      this.#eof = true;
      return null;
    }
    const batch = new DirBatch(buf);
    if (batch.eof) this.#eof = true; // the native side already closed the DIR
    return batch.count > 0 ? batch : null;
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
  const sizes = options?.hsmSizes;
  if (sizes !== undefined && !(sizes.min >= 0 && sizes.min <= sizes.max))
    throw new RangeError(`hsmSizes must have 0 <= min <= max, got ${sizes.min}..${sizes.max}`);
  let opened: [NativeDirHandle, Buffer | null];
  try {
    if (beneath) {
      if (beneath.rel.length > 0) checkRelativePath(beneath.rel);
      await pauseBeforeOpenForTest(beneath.rel);
      opened = await loadNative().opendir(
        Buffer.from(beneath.rel),
        xattr,
        batchSize,
        beneath.rootFd,
        openat2Disabled(),
        sizes?.min,
        sizes?.max,
        true,
      );
    } else
      opened = await loadNative().opendir(
        pathCopy,
        xattr,
        batchSize,
        undefined,
        undefined,
        sizes?.min,
        sizes?.max,
        true,
      );
  } catch (err) {
    throw openDirError(err, pathCopy);
  }
  return new NativeDirReader(opened[0], pathCopy, opened[1]);
};

/** What openDir rejects with when the native open of `path` failed with `err`. */
const openDirError = (err: unknown, path: Buffer): unknown =>
  isNativeErrnoError(err) && err.errno === 40
    ? new UnsafePathError(
        displayPath(path),
        "a component of its path is a symlink (not followed)",
        "opendir",
      )
    : toFsError(err, "opendir", path);

/** One directory of openDirsBeneath(): its first batch, and a reader for the rest when there is more. */
export interface OpenedDir {
  /** The first batch; null when the directory has no entries (or its first read failed: `rest` reports it). */
  first: DirBatch | null;
  /** The batches after `first` (read them, then close it); undefined: the directory was read whole. */
  rest: DirReader | undefined;
}

/**
 * openDir() of several directories beneath one job root (a walk shard's siblings), each opened
 * and its first batch read one after the other in ONE threadpool job instead of one job and its
 * promises per directory (issue 17, `scan5`). The job stops once about `batchSize` entries were
 * read in all, so it holds no more than a batch or two. Per directory, in order: an OpenedDir;
 * the error openDir would have rejected with; or undefined when the job stopped before it (open
 * it with openDir). All undefined while the open-beneath test seam is armed (it pauses before
 * each open).
 */
export const openDirsBeneath = async (
  rootFd: number,
  /** Root-relative directories ("" = the root itself). */
  rels: readonly Buffer[],
  /** Each directory's full path, for messages (as openDir's `path`). */
  paths: readonly Buffer[],
  options?: Omit<DirReadOptions, "beneath">,
): Promise<Array<OpenedDir | Error | undefined>> => {
  const out = new Array<OpenedDir | Error | undefined>(rels.length).fill(undefined);
  if (pauseBeforeOpenArmed() || rels.length === 0) return out;
  const batchSize = options?.batchSize ?? DEFAULT_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH_SIZE) {
    throw new RangeError(`batchSize must be an integer in 1..${MAX_BATCH_SIZE}, got ${batchSize}`);
  }
  const sizes = options?.hsmSizes;
  if (sizes !== undefined && !(sizes.min >= 0 && sizes.min <= sizes.max))
    throw new RangeError(`hsmSizes must have 0 <= min <= max, got ${sizes.min}..${sizes.max}`);
  // What openDir refuses before the native call is that directory's error, not the group's.
  const sent: Buffer[] = [];
  const at: number[] = [];
  for (let i = 0; i < rels.length; i++) {
    const rel = rels[i]!;
    const path = paths[i]!;
    try {
      checkPath(path, "opendir");
      normalizeXattr(options?.hsmXattr, "opendir", path);
      if (rel.length > 0) checkRelativePath(rel);
    } catch (err) {
      if (!(err instanceof Error)) throw err;
      out[i] = err;
      continue;
    }
    sent.push(rel);
    at.push(i);
  }
  if (sent.length === 0) return out;
  const got = await loadNative().opendirs(
    sent,
    options?.hsmXattr ?? null,
    batchSize,
    rootFd,
    openat2Disabled(),
    sizes?.min,
    sizes?.max,
  );
  for (let k = 0; k < sent.length; k++) {
    const i = at[k]!;
    const r = got[k];
    const path = Buffer.from(paths[i]!);
    if (r === undefined) continue;
    if (r instanceof Error) {
      const mapped = openDirError(r, path);
      out[i] = mapped instanceof Error ? mapped : r;
    } else if (r === null) out[i] = { first: null, rest: undefined };
    else if (Buffer.isBuffer(r)) out[i] = { first: nonEmpty(new DirBatch(r)), rest: undefined };
    else {
      const [handle, first] = r;
      out[i] = {
        first: first === null ? null : nonEmpty(new DirBatch(first)),
        rest: new NativeDirReader(handle, path, null),
      };
    }
  }
  return out;
};

const nonEmpty = (batch: DirBatch): DirBatch | null => (batch.count > 0 ? batch : null);

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
  const batch = new DirBatch(buf);
  const entry = batch.count > 0 ? batch.entry(DirBatch.FIRST) : undefined;
  if (entry === undefined) throw new Error("@hsmfleet/fs native statPath returned no record");
  entry.name = lastComponent(path);
  return entry;
};
