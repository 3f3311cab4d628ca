/**
 * The `lustre` HSM backend: state from the trusted.hsm xattr (falling back to `lfs hsm_state` when
 * the xattr cannot be read, e.g. without CAP_SYS_ADMIN), everything else through `lfs` (binary
 * path configurable). Requests go to the MDT's HSM coordinator, which hands them to a copytool
 * (AMLFS's own, or hsmfleet's workers); `lfs` returns once the request is queued.
 *
 * No path a user could redirect ever reaches lfs (lustre-paths.ts): each file is opened beneath its
 * job root's fd with no symlink followed and must be a regular file, and lfs is given
 * `<mount>/.lustre/fid/<FID>` of that very file. `lfs hsm_import` creates a file, so it gets
 * `/proc/self/fd/3/<name>`: the parent directory, opened beneath the root and handed to the child as
 * its fd 3 (lfs opens the name O_CREAT|O_EXCL, so a planted symlink fails with EEXIST).
 *
 * Batch requests pass paths through `--filelist` (one path per line, written to a temporary file),
 * in chunks of `batchSize`, so millions of paths never meet ARG_MAX.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { constants } from "node:fs";
import { close as closeCb } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  DEFAULT_HSM_XATTR,
  FsOperationError,
  HsmFlag,
  HsmRefusedError,
  canArchive,
  canRelease,
  canRemove,
  canRestore,
  decodeHsmAttrs,
  errorCode,
  formatFid,
  parseFid,
  transitionRefusal,
} from "@hsmfleet/core";
import type { HsmAttrs, HsmRequestName, HsmTransition } from "@hsmfleet/core";

import { UnsafePathError, isRegular } from "./beneath-path.js";
import { fidBatch } from "./fid-batch.js";
import type { HsmBackend, HsmRequestOptions } from "./hsm-backend.js";
import type { JobRoot } from "./job-root.js";
import { HSM_FILE_OPERATIONS, nameOperationErrors, namedForOperation } from "./hsm-operation.js";
import { runLfs } from "./lfs-run.js";
import { fidPath, lustreMountOf } from "./lustre-paths.js";

export interface LustreHsmBackendOptions {
  /** Xattr read for the state; default "trusted.hsm". */
  xattr?: string | undefined;
  /** lfs binary; default "lfs" (PATH). */
  lfsPath?: string | undefined;
  /** Paths per lfs request (one hsm_user_request); default 1,000. */
  batchSize?: number | undefined;
  /** Where state comes from: "xattr" (fallback to lfs if unreadable) or "lfs". Default "xattr". */
  stateSource?: "xattr" | "lfs" | undefined;
  /**
   * The Lustre mount point whose `.lustre/fid/` names files to lfs. Default: the Lustre mount
   * holding each job root (/proc/self/mountinfo; see lustre-paths.ts).
   */
  mountPoint?: string | undefined;
}

export const LUSTRE_DEFAULTS = { lfsPath: "lfs", batchSize: 1000, stateSource: "xattr" } as const;

/** `lfs hsm_state` line -> hsm_attrs (compat 0 and archive version 0: lfs does not print them). */
export const parseHsmStateLine = (line: string): HsmAttrs => {
  // The last "path: (0x…)" wins, so a path that itself contains ": (0x" still parses.
  const m = /^.*: \(0x([0-9a-fA-F]+)\)(?: [a-z_]+)*(?:, archive_id:(\d+))?\s*$/.exec(line);
  if (!m) throw new TypeError(`unrecognised lfs hsm_state output ${JSON.stringify(line)}`);
  return {
    compat: 0,
    flags: parseInt(m[1]!, 16),
    archiveId: BigInt(m[2] ?? 0),
    archiveVersion: 0n,
  };
};

const FLAG_OPTIONS: ReadonlyArray<readonly [number, string]> = [
  [HsmFlag.Exists, "--exists"],
  [HsmFlag.Dirty, "--dirty"],
  [HsmFlag.Released, "--released"],
  [HsmFlag.Archived, "--archived"],
  [HsmFlag.NoRelease, "--norelease"],
  [HsmFlag.NoArchive, "--noarchive"],
  [HsmFlag.Lost, "--lost"],
];

const flagOptions = (flags: number): string[] =>
  FLAG_OPTIONS.filter(([bit]) => (flags & bit) !== 0).map(([, opt]) => opt);

const REQUEST_COMMAND: Record<HsmRequestName, string> = {
  archive: "hsm_archive",
  release: "hsm_release",
  restore: "hsm_restore",
  remove: "hsm_remove",
  cancel: "hsm_cancel",
};

/** One file of a request: the name lfs is given, and the path for messages. */
interface LfsFile {
  arg: string;
  shown: string;
}

export class LustreHsmBackend implements HsmBackend {
  readonly kind = "lustre" as const;
  readonly xattr: string;
  readonly lfsPath: string;
  readonly batchSize: number;
  readonly stateSource: "xattr" | "lfs";
  readonly mountPoint: string | undefined;
  readonly #mounts = new WeakMap<JobRoot, Promise<string>>();

  constructor(options: LustreHsmBackendOptions = {}) {
    this.xattr = options.xattr ?? DEFAULT_HSM_XATTR;
    this.lfsPath = options.lfsPath ?? LUSTRE_DEFAULTS.lfsPath;
    this.batchSize = options.batchSize ?? LUSTRE_DEFAULTS.batchSize;
    this.stateSource = options.stateSource ?? LUSTRE_DEFAULTS.stateSource;
    this.mountPoint = options.mountPoint;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new TypeError(`batchSize must be a positive integer, not ${this.batchSize}`);
    }
  }

  /** The mount whose .lustre/fid names the files of `root` (looked up once per root). */
  #mount(root: JobRoot): Promise<string> {
    if (this.mountPoint !== undefined) return Promise.resolve(this.mountPoint);
    let m = this.#mounts.get(root);
    if (!m) {
      m = lustreMountOf(root);
      this.#mounts.set(root, m);
    }
    return m;
  }

  /**
   * The names lfs gets for `rels` (see the module comment), one per path in order, or the error
   * naming the path, `operation` and why (a symlink on the way, not a regular file, …).
   */
  async #files(
    root: JobRoot,
    rels: readonly Buffer[],
    operation: string,
  ): Promise<(LfsFile | Error)[]> {
    const [mount, fids] = await Promise.all([
      this.#mount(root),
      fidBatch(root, rels, { lustre: true, regularOnly: true }),
    ]);
    return fids.map((f, i) => {
      const shown = root.display(rels[i]!);
      if (f instanceof UnsafePathError)
        return namedForOperation(operation, root, rels[i]!, f) as Error;
      if (f instanceof Error) {
        return Object.assign(f, { message: `${operation} of ${shown} refused: ${f.message}` });
      }
      return { arg: fidPath(mount, f), shown };
    });
  }

  async #file(root: JobRoot, rel: Buffer, operation: string): Promise<LfsFile> {
    const [f] = await this.#files(root, [rel], operation);
    if (f instanceof Error) throw f;
    return f!;
  }

  async state(root: JobRoot, rel: Buffer): Promise<HsmAttrs | undefined> {
    if (this.stateSource === "xattr") {
      try {
        const value = await root.getXattr(rel, this.xattr);
        return value === undefined ? undefined : decodeHsmAttrs(value);
      } catch (err) {
        const code = errorCode(err);
        // No permission for trusted.* (non-root) or no xattr support: ask lfs.
        if (code !== "EPERM" && code !== "EACCES" && code !== "ENOTSUP" && code !== "EOPNOTSUPP")
          throw err;
      }
    }
    const f = await this.#file(root, rel, "hsm_state");
    const out = (await this.#lfs(["hsm_state", f.arg], "hsm_state", f.shown)).toString("utf8");
    const attrs = parseHsmStateLine(out.trim().split("\n").pop() ?? "");
    return attrs.flags === 0 && attrs.archiveId === 0n ? undefined : attrs;
  }

  /** The file's FID, read from the file opened beneath the root (as llapi_fd2fid; no lfs run). */
  async fid(root: JobRoot, rel: Buffer): Promise<string> {
    const [r] = await this.fids(root, [rel]);
    if (r instanceof Error) throw r;
    return r!;
  }

  /** FIDs of many files in native batches (fid-batch.ts), each read from the open file. */
  async fids(root: JobRoot, rels: readonly Buffer[]): Promise<(string | Error)[]> {
    return fidBatch(root, rels, { lustre: true });
  }

  /** lfs fid2path: the path of `fid` under the mount point `mount` (absolute path bytes). */
  async fidToPath(mount: string, fid: string): Promise<Buffer> {
    const out = await this.#lfs(["fid2path", mount, formatFid(parseFid(fid))], "fid2path", mount);
    const nl = out.indexOf(0x0a);
    return Buffer.from(out.subarray(0, nl === -1 ? out.length : nl));
  }

  async archive(root: JobRoot, rel: Buffer, options?: HsmRequestOptions): Promise<void> {
    await this.#single("archive", root, rel, canArchive, options);
  }

  async release(root: JobRoot, rel: Buffer): Promise<boolean> {
    return this.#single("release", root, rel, canRelease);
  }

  async restore(root: JobRoot, rel: Buffer): Promise<void> {
    await this.#single("restore", root, rel, canRestore);
  }

  async remove(root: JobRoot, rel: Buffer): Promise<void> {
    await this.#single("remove", root, rel, canRemove);
  }

  cancel(root: JobRoot, rel: Buffer): Promise<void> {
    return this.requestMany("cancel", root, [rel]);
  }

  async requestRestore(root: JobRoot, rels: readonly Buffer[]): Promise<void> {
    await this.requestMany("restore", root, rels);
  }

  /**
   * `lfs hsm_<request> [--archive N] --filelist LIST` per chunk of `batchSize` paths. The MDT
   * checks the rules itself here; a refused chunk rejects with lfs's message, a file that cannot be
   * named safely (a symlink on the way, not a regular file) rejects before lfs runs.
   */
  async requestMany(
    request: HsmRequestName,
    root: JobRoot,
    rels: readonly Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void> {
    if (rels.length === 0) return;
    const command = REQUEST_COMMAND[request];
    const base = [command];
    if (request === "archive") base.push("--archive", String(options?.archiveId ?? 1));
    const dir = await mkdtemp(join(tmpdir(), "hsmfleet-lfs-"));
    try {
      for (let i = 0; i < rels.length; i += this.batchSize) {
        const files = await this.#files(root, rels.slice(i, i + this.batchSize), command);
        const bad = files.find((f): f is Error => f instanceof Error);
        if (bad) throw bad;
        const ok = files as LfsFile[];
        const list = join(dir, `list-${i}`);
        await writeFile(list, ok.map((f) => `${f.arg}\n`).join(""), { mode: 0o600 });
        await this.#lfs([...base, "--filelist", list], command, ok[0]!.shown, ok.length);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async setFlags(
    root: JobRoot,
    rel: Buffer,
    set: number,
    clear: number,
    archiveId?: number,
  ): Promise<void> {
    const f = await this.#file(root, rel, "hsm_set");
    if (set !== 0 || archiveId !== undefined) {
      const argv = ["hsm_set", ...flagOptions(set)];
      if (archiveId !== undefined) argv.push("--archive-id", String(archiveId));
      await this.#lfs([...argv, f.arg], "hsm_set", f.shown);
    }
    if (clear !== 0)
      await this.#lfs(["hsm_clear", ...flagOptions(clear), f.arg], "hsm_clear", f.shown);
  }

  /**
   * `lfs hsm_import` creates the file itself, so the empty placeholder (as TargetRoot made it) is
   * removed first (beneath the root) and its owner and mode are passed on. lfs gets the name in the
   * parent directory opened beneath the root (`/proc/self/fd/3/<name>`, see the module comment).
   */
  async importReleased(root: JobRoot, rel: Buffer, size: number, archiveId: number): Promise<void> {
    const shown = root.display(rel);
    const slash = rel.lastIndexOf(0x2f);
    const name = rel.subarray(slash + 1);
    const nameArg = name.toString("utf8");
    if (!Buffer.from(nameArg, "utf8").equals(name)) {
      throw new FsOperationError(
        "hsm_import",
        shown,
        "EINVAL",
        "name is not valid UTF-8 and cannot be passed to lfs as an argument",
      );
    }
    const st = await root.lstat(rel);
    if (st === undefined || !isRegular(st) || st.size !== 0) {
      throw new FsOperationError(
        "hsm_import",
        shown,
        st === undefined ? "ENOENT" : "EINVAL",
        "placeholder must be an empty regular file",
      );
    }
    const parent =
      slash < 0
        ? undefined
        : await root.openBeneath(
            rel.subarray(0, slash),
            constants.O_RDONLY | constants.O_DIRECTORY,
          );
    try {
      await root.unlink(rel);
      await this.#lfs(
        [
          "hsm_import",
          "--archive",
          String(archiveId),
          "--size",
          String(size),
          "--uid",
          String(st.uid),
          "--gid",
          String(st.gid),
          "--mode",
          `0${(st.mode & 0o7777).toString(8)}`,
          `/proc/self/fd/3/${nameArg}`,
        ],
        "hsm_import",
        shown,
        1,
        [parent?.fd ?? root.fd],
      );
    } finally {
      if (parent) closeCb(parent.fd, () => undefined);
    }
  }

  async markArchived(root: JobRoot, rel: Buffer, archiveId: number): Promise<void> {
    await this.setFlags(
      root,
      rel,
      HsmFlag.Exists | HsmFlag.Archived,
      HsmFlag.Dirty | HsmFlag.Released | HsmFlag.Lost,
      archiveId,
    );
  }

  async #single(
    request: HsmRequestName,
    root: JobRoot,
    rel: Buffer,
    rule: (flags: number) => HsmTransition,
    options?: HsmRequestOptions,
  ): Promise<boolean> {
    // Same rules, same message as the emulation, before the MDT would refuse with a bare errno.
    const attrs = await this.state(root, rel);
    const t = rule(attrs?.flags ?? 0);
    if (!t.ok) {
      const path = root.display(rel);
      throw new HsmRefusedError(
        request,
        path,
        t.reason,
        transitionRefusal(request, path, attrs, t),
      );
    }
    if (request === "release" && ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0) return false;
    await this.requestMany(request, root, [rel], options);
    return true;
  }

  #lfs(
    argv: string[],
    operation: string,
    shown: string,
    count = 1,
    fds?: number[],
  ): Promise<Buffer> {
    return runLfs({ lfsPath: this.lfsPath, argv, operation, shown, count, fds });
  }
}

nameOperationErrors(LustreHsmBackend.prototype, HSM_FILE_OPERATIONS);
