/**
 * JobRoot: every path operation of a job (export source tree, import/restore target) relative to
 * a directory fd of the job's root, with no symlink followed anywhere and never leaving the root.
 *
 * The root path itself is trusted configuration (symlinks in it are resolved once, at open).
 * Relative paths are raw bytes, '/'-separated, checked syntactically here (no empty, "." or ".."
 * segment, not absolute, no NUL) and again in C. The native addon (native/beneath.c) reaches the
 * parent with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) where the
 * kernel has it (Linux ≥ 5.6; probed once) and otherwise walks component by component with
 * openat(O_DIRECTORY | O_NOFOLLOW); the final component is used with the *at call that never
 * follows it, or through an fd of the entry. A directory swapped for a symlink fails with ELOOP
 * (UnsafePathError) instead of being followed — there is no check-then-use window.
 *
 * HSMFLEET_FS_NO_OPENAT2=1 (or setOpenat2Disabled(true)) forces the openat walk: the tests run
 * both paths. See docs/security.md "Path safety".
 */
import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open } from "node:fs/promises";

import { FsOperationError, displayPath } from "@hsmfleet/core";

import { errnoMessage, errnoName } from "./errno.js";
import { isNativeErrnoError, loadNative } from "./native.js";
import { pauseBeforeOpenForTest } from "./test-seam.js";
import {
  STAT_REC,
  UnsafePathError,
  checkRelativePath,
  openat2Disabled,
  parseStat,
} from "./beneath-path.js";
import type { BeneathStat } from "./beneath-path.js";
import { handleOf } from "./open-beneath.js";

export { openBeneath, openFileBeneath } from "./open-beneath.js";
export {
  NO_OPENAT2_ENV,
  UnsafePathError,
  checkRelativePath,
  isDirectoryMode,
  isRegular,
  isSymlinkMode,
  openat2Disabled,
  setOpenat2Disabled,
  usesOpenat2,
} from "./beneath-path.js";
export type { BeneathStat } from "./beneath-path.js";

const SLASH = 0x2f;

const OP = {
  open: 1,
  mkdirs: 2,
  mkdir: 3,
  symlink: 4,
  unlink: 5,
  lstat: 6,
  readlink: 7,
  setattr: 8,
  setxattr: 9,
  getxattr: 10,
  rename: 11,
} as const;

/** Entry attributes set by setAttributes. */
export interface EntryAttributes {
  uid: number;
  gid: number;
  /** Permission bits incl. setuid/setgid/sticky (mode & 0o7777 is applied). */
  mode: number;
  /** Seconds since the epoch (fractions allowed); set as both mtime and atime. */
  mtimeSec: number;
}

/**
 * A job root: an O_DIRECTORY fd and the operations beneath it. Prefer the shared instance of
 * jobRootFor(path) in workers; JobRoot.open gives a private one (close it).
 */
export class JobRoot {
  /** The root as given (absolute, printable), for messages. */
  readonly path: string;
  readonly #pathBytes: Buffer;
  /** The root directory, open for the JobRoot's life (its fd is what everything is relative to). */
  readonly #dir: FileHandle;
  #fd: number;
  #inflight = 0;
  #closing = false;

  private constructor(path: Buffer, dir: FileHandle) {
    this.path = displayPath(path);
    this.#pathBytes = path.length === 1 ? Buffer.alloc(0) : path;
    this.#dir = dir;
    this.#fd = dir.fd;
  }

  /** Opens `root` (an absolute path of an existing directory; symlinks in it are resolved). */
  static async open(root: string | Buffer): Promise<JobRoot> {
    const bytes = typeof root === "string" ? Buffer.from(root) : root;
    if (bytes[0] !== SLASH)
      throw new UnsafePathError(displayPath(bytes), "job root must be absolute");
    let end = bytes.length;
    while (end > 1 && bytes[end - 1] === SLASH) end--;
    const trimmed = bytes.subarray(0, end);
    let fh: FileHandle;
    try {
      fh = await open(trimmed, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "EIO";
      throw new FsOperationError(
        "open",
        displayPath(trimmed),
        code,
        code === "ENOTDIR" ? "the job root is not a directory" : "cannot open the job root",
        err,
      );
    }
    return new JobRoot(Buffer.from(trimmed), fh);
  }

  /** The root's directory fd (valid until close()). */
  get fd(): number {
    return this.#fd;
  }

  /** Absolute path bytes of `rel`, for messages only (never opened by path). */
  absolute(rel: Buffer): Buffer {
    return rel.length === 0
      ? Buffer.from(this.#pathBytes.length ? this.#pathBytes : Buffer.from("/"))
      : Buffer.concat([this.#pathBytes, Buffer.from([SLASH]), rel]);
  }

  /** Printable absolute path of `rel`. */
  display(rel: Buffer): string {
    return displayPath(this.absolute(rel));
  }

  /** Closes the root fd once no operation is in flight. */
  close(): void {
    this.#closing = true;
    if (this.#inflight === 0 && this.#fd >= 0) {
      this.#fd = -1;
      this.#dir.close().catch(() => undefined);
    }
  }

  /**
   * Runs `job`, a native call that works beneath this root's fd (`fallback`: force the openat
   * walk), keeping the fd open meanwhile; its errno rejections become FsOperationError /
   * UnsafePathError naming `rel` and `operation` (or what it says for the failed syscall), as
   * every other operation's (small-file.ts).
   */
  async runBeneath<T>(
    operation: string | ((syscall: string) => string),
    rel: Buffer,
    job: (rootFd: number, fallback: boolean) => Promise<T>,
  ): Promise<T> {
    checkRelativePath(rel);
    const op = (syscall: string) =>
      typeof operation === "string" ? operation : operation(syscall);
    if (this.#fd < 0) {
      throw new FsOperationError(op("open"), this.display(rel), "EBADF", "the job root is closed");
    }
    this.#inflight++;
    try {
      return await job(this.#fd, openat2Disabled());
    } catch (err) {
      throw this.#error(err, op(isNativeErrnoError(err) ? err.syscall : ""), rel);
    } finally {
      this.#inflight--;
      if (this.#closing && this.#inflight === 0) this.close();
    }
  }

  /**
   * Runs `job` (native batches working beneath this root's fd themselves: release-batch.ts,
   * fid-batch.ts) with the fd kept open meanwhile; `fallback` says whether to force the openat walk.
   */
  async withFd<T>(
    operation: string,
    job: (rootFd: number, fallback: boolean) => Promise<T>,
  ): Promise<T> {
    if (this.#fd < 0) {
      throw new FsOperationError(operation, this.path, "EBADF", "the job root is closed");
    }
    this.#inflight++;
    try {
      return await job(this.#fd, openat2Disabled());
    } finally {
      this.#inflight--;
      if (this.#closing && this.#inflight === 0) this.close();
    }
  }

  /**
   * The error of an operation beneath this root that failed with `errno` in `syscall`, `at` bytes
   * of `rel` resolved (ELOOP: UnsafePathError naming the symlink component), as every other
   * operation's: for native batches that report errno values in their records.
   */
  errnoError(operation: string, rel: Buffer, errno: number, syscall: string, at = 0): Error {
    const err = Object.assign(new Error(`${syscall}: ${errnoMessage(errno)}`), {
      errno,
      syscall,
      at,
    });
    return this.#error(err, operation, rel) as Error;
  }

  async #call(
    op: number,
    operation: string,
    rel: Buffer,
    nums: number[],
    data: Buffer | null,
    out: Buffer | null,
    name: string | null,
  ): Promise<number> {
    checkRelativePath(rel);
    if (this.#fd < 0) {
      throw new FsOperationError(operation, this.display(rel), "EBADF", "the job root is closed");
    }
    this.#inflight++;
    try {
      return await loadNative().beneath(
        op,
        this.#fd,
        rel,
        [openat2Disabled() ? 1 : 0, ...nums],
        data,
        out,
        name,
      );
    } catch (err) {
      throw this.#error(err, operation, rel);
    } finally {
      this.#inflight--;
      if (this.#closing && this.#inflight === 0) this.close();
    }
  }

  #error(err: unknown, operation: string, rel: Buffer): unknown {
    if (!isNativeErrnoError(err)) return err;
    const code = errnoName(err.errno);
    const at = (err as { at?: number }).at ?? 0;
    if (err.errno === 40 /* ELOOP */) {
      let end = rel.indexOf(SLASH, at);
      if (end < 0) end = rel.length;
      return new UnsafePathError(
        this.display(rel.subarray(0, end)),
        `is a symlink (not followed; ${operation} ${this.display(rel)} refused)`,
        operation,
      );
    }
    return new FsOperationError(
      operation,
      this.display(rel),
      code,
      `${err.syscall}: ${errnoMessage(err.errno)}`,
      err,
    );
  }

  /**
   * Opens `rel` with `flags` (O_NOFOLLOW and O_CLOEXEC are always added; `mode` for O_CREAT) and
   * returns the raw fd with its fstat. The caller owns the fd (close it with fs.close).
   */
  async openBeneath(
    rel: Buffer,
    flags: number,
    mode = 0o600,
  ): Promise<{ fd: number; stat: BeneathStat }> {
    await pauseBeforeOpenForTest(rel);
    const out = Buffer.alloc(STAT_REC);
    const fd = await this.#call(OP.open, "open", rel, [flags, mode], null, out, null);
    return { fd, stat: parseStat(out) };
  }

  /**
   * As openBeneath, as a FileHandle (the fd is reopened through /proc/self/fd, which names the
   * very inode opened, and closed). O_CREAT/O_EXCL/O_TRUNC apply to the first open only.
   */
  async openFile(
    rel: Buffer,
    flags: number,
    mode = 0o600,
  ): Promise<{ handle: FileHandle; stat: BeneathStat }> {
    const { fd, stat } = await this.openBeneath(rel, flags, mode);
    return { handle: await handleOf(fd, flags, this.display(rel)), stat };
  }

  /** mkdir -p of `rel` itself (every missing component made with `mode`, umask applies). */
  async mkdirs(rel: Buffer, mode = 0o755): Promise<void> {
    await this.#call(OP.mkdirs, "mkdir", rel, [mode], null, null, null);
  }

  /** mkdir of the parents of `rel` (nothing for a single-segment path). */
  async ensureParents(rel: Buffer, mode = 0o755): Promise<void> {
    checkRelativePath(rel);
    const slash = rel.lastIndexOf(SLASH);
    if (slash > 0) await this.mkdirs(rel.subarray(0, slash), mode);
  }

  async mkdir(rel: Buffer, mode: number): Promise<void> {
    await this.#call(OP.mkdir, "mkdir", rel, [mode], null, null, null);
  }

  /** Creates symlink `rel` storing `target` verbatim (never resolved). */
  async symlink(rel: Buffer, target: Buffer): Promise<void> {
    if (!Buffer.isBuffer(target) || target.length === 0 || target.includes(0)) {
      throw new FsOperationError(
        "symlink",
        this.display(rel),
        "EINVAL",
        "symlink target is empty or contains a NUL byte",
      );
    }
    await this.#call(OP.symlink, "symlink", rel, [], target, null, null);
  }

  /** Removes a non-directory (or an empty directory with `directory`). */
  async unlink(rel: Buffer, directory = false): Promise<void> {
    await this.#call(
      OP.unlink,
      directory ? "rmdir" : "unlink",
      rel,
      [directory ? 1 : 0],
      null,
      null,
      null,
    );
  }

  /** lstat of `rel`; undefined when it or a parent does not exist. Never follows. */
  async lstat(rel: Buffer): Promise<BeneathStat | undefined> {
    const out = Buffer.alloc(STAT_REC);
    try {
      await this.#call(OP.lstat, "lstat", rel, [], null, out, null);
    } catch (err) {
      if (err instanceof FsOperationError && err.code === "ENOENT") return undefined;
      throw err;
    }
    return parseStat(out);
  }

  /** The target of symlink `rel` as raw bytes. */
  async readlink(rel: Buffer): Promise<Buffer> {
    const out = Buffer.alloc(4096);
    const n = await this.#call(OP.readlink, "readlink", rel, [], null, out, null);
    return Buffer.from(out.subarray(0, n));
  }

  /**
   * Owner, permission bits (not on symlinks; omitted when `mode` is undefined) and mtime = atime,
   * on the entry itself (an fd of it, or for a symlink the *at calls with AT_SYMLINK_NOFOLLOW).
   * Owner goes first as chown clears setuid/setgid.
   */
  async setAttributes(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    const sec = Math.floor(attrs.mtimeSec);
    const nsec = Math.min(999_999_999, Math.round((attrs.mtimeSec - sec) * 1e9));
    await this.#call(
      OP.setattr,
      "setattr",
      rel,
      [attrs.uid, attrs.gid, attrs.mode & 0o7777, sec, nsec],
      null,
      null,
      null,
    );
  }

  /** Sets xattr `name` on a regular file or directory (a symlink is refused: UnsafePathError). */
  async setXattr(rel: Buffer, name: string, value: Buffer): Promise<void> {
    await this.#call(OP.setxattr, "setxattr", rel, [], value, null, name);
  }

  /** Value of xattr `name`, undefined when absent. */
  async getXattr(rel: Buffer, name: string): Promise<Buffer | undefined> {
    let out = Buffer.alloc(256);
    for (;;) {
      try {
        const n = await this.#call(OP.getxattr, "getxattr", rel, [], null, out, name);
        return n < 0 ? undefined : Buffer.from(out.subarray(0, n));
      } catch (err) {
        if (err instanceof FsOperationError && err.code === "ERANGE" && out.length < 65536) {
          out = Buffer.alloc(65536);
          continue;
        }
        throw err;
      }
    }
  }

  /** Renames `from` to `to`, both beneath the root; fails with EEXIST when `to` exists. */
  async renameNoReplace(from: Buffer, to: Buffer): Promise<void> {
    checkRelativePath(to);
    await this.#call(OP.rename, "rename", from, [], to, null, null);
  }

  /**
   * Creates a new file O_CREAT|O_EXCL|O_NOFOLLOW and writes `data` into it (markers, state files
   * in user-writable places: a planted symlink or file of that name fails with EEXIST).
   */
  async writeNewFile(rel: Buffer, data: Buffer, mode = 0o644): Promise<void> {
    const { handle } = await this.openFile(
      rel,
      constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY,
      mode,
    );
    try {
      await handle.write(data, 0, data.length, 0);
    } finally {
      await handle.close();
    }
  }
}

/** Shared JobRoots by root path (bounded: older ones are closed once idle). */
const shared = new Map<string, JobRoot>();
const SHARED_MAX = 64;
/**
 * An evicted shared root is closed this much later: callers that took its raw fd (`.fd`, handed
 * to readSmallFile / uploadFile) use it only to open, and must never see the number reused.
 */
const SHARED_CLOSE_DELAY_MS = 15 * 60_000;
const pendingOpen = new Map<string, Promise<JobRoot>>();

/**
 * The shared JobRoot of `root` (opened once per process and path; when more than 64 are open the
 * least recently used one is dropped and closed 15 minutes later, once idle).
 */
export const jobRootFor = async (root: string | Buffer): Promise<JobRoot> => {
  const key = typeof root === "string" ? root : root.toString("latin1");
  const hit = shared.get(key);
  if (hit && hit.fd >= 0) {
    shared.delete(key);
    shared.set(key, hit);
    return hit;
  }
  let pending = pendingOpen.get(key);
  if (!pending) {
    pending = JobRoot.open(root);
    pendingOpen.set(key, pending);
  }
  try {
    const opened = await pending;
    if (!shared.has(key)) {
      shared.set(key, opened);
      if (shared.size > SHARED_MAX) {
        const [oldKey, old] = shared.entries().next().value as [string, JobRoot];
        shared.delete(oldKey);
        setTimeout(() => old.close(), SHARED_CLOSE_DELAY_MS).unref();
      }
    }
    return shared.get(key)!;
  } finally {
    pendingOpen.delete(key);
  }
};
