/**
 * Creating entries under an import target root without ever leaving it and without following a
 * symlink. Relative paths are raw bytes ('/'-separated, as core's pathForBlobName produces them);
 * they are checked syntactically (no empty, "." or ".." segment, no NUL, not absolute) and every
 * existing parent component is lstat-ed from the root down: a symlink anywhere is refused with
 * UnsafePathError, a non-directory with FsOperationError ENOTDIR. The final component is never
 * followed either (O_EXCL|O_NOFOLLOW, mkdir/symlink refuse existing names, lchown/lutimes).
 *
 * Known limit (TOCTOU): without openat(2) and friends, a parent component that another process
 * swaps for a symlink between the check and the use is followed by the kernel. The same holds
 * for directories in the verified-directory cache, which are not re-checked. The import target is
 * expected not to be written concurrently by untrusted users; closing this gap needs an
 * openat/O_NOFOLLOW walk in the native addon.
 *
 * The root itself is trusted configuration: symlinks in the root's own path are allowed.
 */
import type { BigIntStats } from "node:fs";
import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import {
  chmod,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readlink,
  stat,
  symlink,
  unlink,
} from "node:fs/promises";

import {
  FsOperationError,
  HsmfleetError,
  displayPath,
  errorCode,
  errorMessage,
} from "@hsmfleet/core";

import { pauseBeforeOpenForTest } from "./test-seam.js";

const SLASH = 0x2f;
const DOT = 0x2e;

/** Default bound of the verified-directory cache (entries, per TargetRoot). */
export const DEFAULT_DIR_CACHE_SIZE = 16_384;

/**
 * A relative path that is malformed or would leave the root / go through a symlink. `path` is the
 * display form of the offending path: the relative path as given for syntax errors, the absolute
 * path of the offending component for symlinks.
 */
export class UnsafePathError extends HsmfleetError {
  readonly path: string;
  constructor(path: string, detail: string) {
    super(`unsafe path ${path}: ${detail}`);
    this.name = "UnsafePathError";
    this.path = path;
  }
}

export interface TargetRootOptions {
  /** Bound of the verified-directory cache; default DEFAULT_DIR_CACHE_SIZE. 0 disables it. */
  dirCacheSize?: number;
}

export interface EntryAttributes {
  uid: number;
  gid: number;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777 is applied). */
  mode: number;
  /** Seconds since the epoch (fractions allowed); set as both mtime and atime. */
  mtimeSec: number;
}

const fsError = (err: unknown, operation: string, path: Buffer): unknown =>
  err instanceof HsmfleetError
    ? err
    : new FsOperationError(operation, displayPath(path), errorCode(err), errorMessage(err), err);

const isCode = (err: unknown, code: string): boolean => errorCode(err) === code;

/**
 * End offsets of the segments of a checked relative path; throws UnsafePathError when `rel` is
 * empty, absolute, contains NUL, or has an empty / "." / ".." segment.
 */
const segmentEnds = (rel: Buffer): number[] => {
  if (!Buffer.isBuffer(rel)) throw new TypeError("relative path must be a Buffer");
  const refuse = (detail: string): never => {
    throw new UnsafePathError(displayPath(rel), detail);
  };
  if (rel.length === 0) refuse("empty path");
  if (rel[0] === SLASH) refuse("absolute path");
  if (rel.includes(0)) refuse("contains a NUL byte");
  const ends: number[] = [];
  let start = 0;
  for (let i = 0; i <= rel.length; i++) {
    if (i < rel.length && rel[i] !== SLASH) continue;
    const len = i - start;
    if (len === 0) refuse("empty path segment");
    if (len === 1 && rel[start] === DOT) refuse("'.' segment");
    if (len === 2 && rel[start] === DOT && rel[start + 1] === DOT) refuse("'..' segment");
    ends.push(i);
    start = i + 1;
  }
  return ends;
};

/**
 * An import target directory. All entry paths are relative to it; see the module comment for
 * the checks and the TOCTOU limit. Verified directories are cached (bounded, least recently used
 * evicted) so many files in one directory cost one lstat chain, not one per file.
 */
export class TargetRoot {
  readonly root: string;
  private readonly rootBytes: Buffer;
  private readonly cacheSize: number;
  /** Relative directory path (latin1 of its bytes) → verified as a real directory. */
  private readonly verified = new Map<string, true>();
  private lstatCount = 0;

  /** Prefer TargetRoot.open, which checks that `root` is an existing directory. */
  constructor(root: string, options?: TargetRootOptions) {
    if (!root.startsWith("/")) throw new UnsafePathError(root, "target root must be absolute");
    const trimmed = root.length > 1 ? root.replace(/\/+$/, "") : root;
    this.root = trimmed === "" ? "/" : trimmed;
    this.rootBytes = Buffer.from(this.root === "/" ? "" : this.root);
    this.cacheSize = options?.dirCacheSize ?? DEFAULT_DIR_CACHE_SIZE;
  }

  static async open(root: string, options?: TargetRootOptions): Promise<TargetRoot> {
    const target = new TargetRoot(root, options);
    let st;
    try {
      st = await stat(target.root);
    } catch (err) {
      throw fsError(err, "stat", Buffer.from(target.root));
    }
    if (!st.isDirectory()) {
      throw new FsOperationError("stat", target.root, "ENOTDIR", "target root is not a directory");
    }
    return target;
  }

  /** Number of directories currently in the verified cache. */
  get cachedDirectories(): number {
    return this.verified.size;
  }

  /** lstat calls made to verify parent components so far (diagnostics, tests). */
  get verifyLstats(): number {
    return this.lstatCount;
  }

  /** Absolute path bytes of `rel` (checked syntactically; nothing on disk is touched). */
  absolute(rel: Buffer): Buffer {
    segmentEnds(rel);
    return this.join(rel);
  }

  /** mkdir -p of the parents of `rel` (mode 0o755, umask applies), each verified. */
  async ensureParents(rel: Buffer): Promise<void> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, true, "mkdir");
  }

  /**
   * Creates directory `rel` (parents must exist: call ensureParents first). "existed" when it is
   * already a real directory; UnsafePathError when it is a symlink; FsOperationError EEXIST
   * when it is something else. `mode` is subject to the umask (setAttributes
   * sets it exactly).
   */
  async mkdir(rel: Buffer, mode: number): Promise<"created" | "existed"> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "mkdir", true);
    const abs = this.join(rel);
    try {
      await mkdir(abs, mode);
      this.remember(rel);
      return "created";
    } catch (err) {
      if (!isCode(err, "EEXIST")) throw fsError(err, "mkdir", abs);
    }
    const st = await this.lstatAbs(abs, "mkdir");
    if (st?.isSymbolicLink()) {
      throw new UnsafePathError(displayPath(abs), "exists as a symlink, not a directory");
    }
    if (!st?.isDirectory()) {
      throw new FsOperationError(
        "mkdir",
        displayPath(abs),
        "EEXIST",
        "exists and is not a directory",
      );
    }
    this.remember(rel);
    return "existed";
  }

  /**
   * Creates symlink `rel` with `target` stored verbatim (it is data, never resolved or
   * followed). Parents must exist. Rejects with FsOperationError EEXIST when the name exists.
   */
  async symlink(rel: Buffer, target: Buffer): Promise<void> {
    const ends = segmentEnds(rel);
    const abs = this.join(rel);
    if (!Buffer.isBuffer(target)) throw new TypeError("symlink target must be a Buffer");
    if (target.length === 0 || target.includes(0)) {
      throw new FsOperationError(
        "symlink",
        displayPath(abs),
        "EINVAL",
        "symlink target is empty or contains a NUL byte",
      );
    }
    await this.walkParents(rel, ends, false, "symlink", true);
    try {
      await symlink(target, abs);
    } catch (err) {
      throw fsError(err, "symlink", abs);
    }
  }

  /**
   * Opens a new regular file exclusively (O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY, `mode` subject to
   * the umask). Parents must exist. FsOperationError EEXIST when the name exists (any type).
   */
  async createFile(rel: Buffer, mode: number): Promise<FileHandle> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "open", true);
    await pauseBeforeOpenForTest(rel);
    const abs = this.join(rel);
    const flags = constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_WRONLY;
    try {
      return await open(abs, flags, mode);
    } catch (err) {
      throw fsError(err, "open", abs);
    }
  }

  /**
   * Opens an existing regular file for reading and writing (O_RDWR|O_NOFOLLOW: a symlink at the
   * final component fails with ELOOP). Parents must exist and are verified. Anything that is not
   * a regular file is refused with FsOperationError EINVAL.
   */
  async openExisting(rel: Buffer): Promise<FileHandle> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "open", true);
    const abs = this.join(rel);
    let fh: FileHandle;
    try {
      fh = await open(abs, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      throw fsError(err, "open", abs);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        throw new FsOperationError("open", displayPath(abs), "EINVAL", "not a regular file");
      }
    } catch (err) {
      await fh.close();
      throw fsError(err, "fstat", abs);
    }
    return fh;
  }

  /** Target of symlink `rel` as raw bytes (the link itself is read, never followed). */
  async readlink(rel: Buffer): Promise<Buffer> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "readlink", true);
    const abs = this.join(rel);
    try {
      return await readlink(abs, { encoding: "buffer" });
    } catch (err) {
      throw fsError(err, "readlink", abs);
    }
  }

  /** lstat of `rel`, or undefined when it (or a parent) does not exist. Never follows. */
  async lstat(rel: Buffer): Promise<BigIntStats | undefined> {
    const ends = segmentEnds(rel);
    if (!(await this.walkParents(rel, ends, false, "lstat"))) return undefined;
    return this.lstatAbs(this.join(rel), "lstat");
  }

  /** Removes a file, symlink or other non-directory (EISDIR for directories). */
  async unlink(rel: Buffer): Promise<void> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "unlink", true);
    const abs = this.join(rel);
    try {
      await unlink(abs);
    } catch (err) {
      throw fsError(err, "unlink", abs);
    }
  }

  /**
   * Sets owner (lchown), permission bits (chmod, skipped for symlinks) and mtime = atime
   * (lutimes) on `rel` without following a symlink at the final component. Owner goes first as
   * chown clears setuid/setgid. The chmod is by path after an lstat: see the TOCTOU note.
   */
  async setAttributes(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    const ends = segmentEnds(rel);
    await this.walkParents(rel, ends, false, "lstat", true);
    const abs = this.join(rel);
    const st = await this.lstatAbs(abs, "lstat");
    if (!st) throw new FsOperationError("lstat", displayPath(abs), "ENOENT", "no such entry");
    let op = "lchown";
    try {
      await lchown(abs, attrs.uid, attrs.gid);
      if (!st.isSymbolicLink()) {
        op = "chmod";
        await chmod(abs, attrs.mode & 0o7777);
      }
      op = "lutimes";
      await lutimes(abs, attrs.mtimeSec, attrs.mtimeSec);
    } catch (err) {
      throw fsError(err, op, abs);
    }
  }

  private join(rel: Buffer): Buffer {
    return Buffer.concat([this.rootBytes, Buffer.from([SLASH]), rel]);
  }

  private async lstatAbs(abs: Buffer, op: string): Promise<BigIntStats | undefined> {
    try {
      return await lstat(abs, { bigint: true });
    } catch (err) {
      if (isCode(err, "ENOENT")) return undefined;
      throw fsError(err, op, abs);
    }
  }

  private remember(dirRel: Buffer): void {
    if (this.cacheSize <= 0) return;
    const key = dirRel.toString("latin1");
    if (this.verified.has(key)) this.verified.delete(key);
    else if (this.verified.size >= this.cacheSize) {
      const oldest = this.verified.keys().next();
      if (!oldest.done) this.verified.delete(oldest.value);
    }
    this.verified.set(key, true);
  }

  private cached(dirRel: Buffer): boolean {
    const key = dirRel.toString("latin1");
    if (!this.verified.has(key)) return false;
    this.verified.delete(key); // refresh LRU position
    this.verified.set(key, true);
    return true;
  }

  /**
   * Verifies the parent components of `rel` from the deepest cached one down. With `create`
   * missing ones are made (0o755); otherwise a missing one ends the walk: returns false, or
   * rejects with ENOENT when `mustExist`.
   */
  private async walkParents(
    rel: Buffer,
    ends: number[],
    create: boolean,
    op: string,
    mustExist = false,
  ): Promise<boolean> {
    const parents = ends.length - 1;
    let first = 0;
    for (let k = parents - 1; k >= 0; k--) {
      if (this.cached(rel.subarray(0, ends[k]))) {
        first = k + 1;
        break;
      }
    }
    for (let i = first; i < parents; i++) {
      const dirRel = rel.subarray(0, ends[i]);
      const abs = this.join(dirRel);
      this.lstatCount++;
      let st = await this.lstatAbs(abs, op);
      if (!st) {
        if (!create) {
          if (mustExist) {
            throw new FsOperationError(op, displayPath(abs), "ENOENT", "parent directory missing");
          }
          return false;
        }
        try {
          await mkdir(abs, 0o755);
          this.remember(dirRel);
          continue;
        } catch (err) {
          if (!isCode(err, "EEXIST")) throw fsError(err, "mkdir", abs);
        }
        this.lstatCount++;
        st = await this.lstatAbs(abs, op); // created concurrently: verify what is there
        if (!st) throw new FsOperationError("mkdir", displayPath(abs), "ENOENT", "vanished");
      }
      if (st.isSymbolicLink()) {
        throw new UnsafePathError(displayPath(abs), "path component is a symlink");
      }
      if (!st.isDirectory()) {
        throw new FsOperationError(
          op,
          displayPath(abs),
          "ENOTDIR",
          "path component is not a directory",
        );
      }
      this.remember(dirRel);
    }
    return true;
  }
}
