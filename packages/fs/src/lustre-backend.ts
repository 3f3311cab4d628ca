/**
 * The `lustre` HSM backend: state from the trusted.hsm xattr (falling back to `lfs hsm_state` when
 * the xattr cannot be read, e.g. without CAP_SYS_ADMIN), everything else through `lfs` (binary
 * path configurable). Requests go to the MDT's HSM coordinator, which hands them to a copytool
 * (AMLFS's own, or hsmfleet's workers); `lfs` returns once the request is queued.
 *
 * Batch requests pass paths through `--filelist` (one path per line, written as raw bytes to a
 * temporary file), in chunks of `batchSize`, so millions of paths never meet ARG_MAX. A path with a
 * newline cannot go in a file list and is passed as an argument instead.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, unlink, writeFile, lstat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  DEFAULT_HSM_XATTR,
  DependencyError,
  FsOperationError,
  HsmFlag,
  HsmRefusedError,
  canArchive,
  canRelease,
  canRemove,
  canRestore,
  decodeHsmAttrs,
  displayPath,
  errorCode,
  errorMessage,
  formatFid,
  parseFid,
  transitionRefusal,
} from "@hsmfleet/core";
import type { HsmAttrs, HsmRequestName, HsmTransition } from "@hsmfleet/core";

import type { HsmBackend, HsmRequestOptions } from "./hsm-backend.js";
import { getXattr } from "./xattr.js";

export interface LustreHsmBackendOptions {
  /** Xattr read for the state; default "trusted.hsm". */
  xattr?: string | undefined;
  /** lfs binary; default "lfs" (PATH). */
  lfsPath?: string | undefined;
  /** Paths per lfs request (one hsm_user_request); default 1,000. */
  batchSize?: number | undefined;
  /** Where state comes from: "xattr" (fallback to lfs if unreadable) or "lfs". Default "xattr". */
  stateSource?: "xattr" | "lfs" | undefined;
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

const utf8Arg = (path: Buffer, operation: string): string => {
  const text = path.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(path)) {
    throw new FsOperationError(
      operation,
      displayPath(path),
      "EINVAL",
      "path is not valid UTF-8 and cannot be passed to lfs as an argument",
    );
  }
  return text;
};

const REQUEST_COMMAND: Record<HsmRequestName, string> = {
  archive: "hsm_archive",
  release: "hsm_release",
  restore: "hsm_restore",
  remove: "hsm_remove",
  cancel: "hsm_cancel",
};

export class LustreHsmBackend implements HsmBackend {
  readonly kind = "lustre" as const;
  readonly xattr: string;
  readonly lfsPath: string;
  readonly batchSize: number;
  readonly stateSource: "xattr" | "lfs";

  constructor(options: LustreHsmBackendOptions = {}) {
    this.xattr = options.xattr ?? DEFAULT_HSM_XATTR;
    this.lfsPath = options.lfsPath ?? LUSTRE_DEFAULTS.lfsPath;
    this.batchSize = options.batchSize ?? LUSTRE_DEFAULTS.batchSize;
    this.stateSource = options.stateSource ?? LUSTRE_DEFAULTS.stateSource;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new TypeError(`batchSize must be a positive integer, not ${this.batchSize}`);
    }
  }

  async state(absPath: Buffer): Promise<HsmAttrs | undefined> {
    if (this.stateSource === "xattr") {
      try {
        const value = await getXattr(absPath, this.xattr);
        return value === undefined ? undefined : decodeHsmAttrs(value);
      } catch (err) {
        const code = errorCode(err);
        // No permission for trusted.* (non-root) or no xattr support: ask lfs.
        if (code !== "EPERM" && code !== "EACCES" && code !== "ENOTSUP" && code !== "EOPNOTSUPP")
          throw err;
      }
    }
    const out = await this.lfs(["hsm_state", utf8Arg(absPath, "hsm_state")], "hsm_state", absPath);
    const attrs = parseHsmStateLine(out.trim().split("\n").pop() ?? "");
    return attrs.flags === 0 && attrs.archiveId === 0n ? undefined : attrs;
  }

  async fid(absPath: Buffer): Promise<string> {
    const out = await this.lfs(["path2fid", utf8Arg(absPath, "path2fid")], "path2fid", absPath);
    return formatFid(parseFid(out.trim().split(/\s/).pop() ?? ""));
  }

  /**
   * `lfs path2fid a b c …` (one process per `batchSize` paths; lfs prints `path: [fid]` per line
   * when given several). Paths that cannot be passed (not UTF-8) or that lfs does not answer for
   * get their own error.
   */
  async fids(absPaths: Buffer[]): Promise<(string | Error)[]> {
    const out: (string | Error)[] = new Array<string | Error>(absPaths.length);
    for (let i = 0; i < absPaths.length; i += this.batchSize) {
      const args: string[] = [];
      const index = new Map<string, number>();
      for (let k = i; k < Math.min(i + this.batchSize, absPaths.length); k++) {
        try {
          const a = utf8Arg(absPaths[k]!, "path2fid");
          if (a.includes("\n"))
            throw new FsOperationError(
              "path2fid",
              displayPath(absPaths[k]!),
              "EINVAL",
              "newline in path",
            );
          args.push(a);
          index.set(a, k);
        } catch (err) {
          out[k] = err instanceof Error ? err : new Error(errorMessage(err));
        }
      }
      if (args.length === 0) continue;
      if (args.length === 1) {
        const k = index.get(args[0]!)!;
        out[k] = await this.fid(absPaths[k]!).catch((err: unknown) =>
          err instanceof Error ? err : new Error(errorMessage(err)),
        );
        continue;
      }
      let text = "";
      try {
        text = await this.lfs(["path2fid", ...args], "path2fid", absPaths[i]!, "utf8", args.length);
      } catch {
        // Some path failed: lfs still printed the others; ask one at a time to name the failures.
        for (const k of index.values()) {
          out[k] = await this.fid(absPaths[k]!).catch((e: unknown) =>
            e instanceof Error ? e : new Error(errorMessage(e)),
          );
        }
        continue;
      }
      for (const line of text.split("\n")) {
        const at = line.lastIndexOf(": ");
        if (at === -1) continue;
        const k = index.get(line.slice(0, at));
        if (k !== undefined) out[k] = formatFid(parseFid(line.slice(at + 2)));
      }
      for (const k of index.values()) {
        out[k] ??= new FsOperationError(
          "path2fid",
          displayPath(absPaths[k]!),
          "EIO",
          "lfs printed no FID for it",
        );
      }
    }
    return out;
  }

  /** lfs fid2path: the path of `fid` under the mount point `mount` (absolute path bytes). */
  async fidToPath(mount: string, fid: string): Promise<Buffer> {
    const out = await this.lfs(
      ["fid2path", mount, formatFid(parseFid(fid))],
      "fid2path",
      Buffer.from(mount),
      "buffer",
    );
    const first = out.subarray(0, out.indexOf(0x0a) === -1 ? out.length : out.indexOf(0x0a));
    return Buffer.from(first);
  }

  async archive(absPath: Buffer, options?: HsmRequestOptions): Promise<void> {
    await this.single("archive", absPath, canArchive, options);
  }

  async release(absPath: Buffer): Promise<boolean> {
    return this.single("release", absPath, canRelease);
  }

  async restore(absPath: Buffer): Promise<void> {
    await this.single("restore", absPath, canRestore);
  }

  async remove(absPath: Buffer): Promise<void> {
    await this.single("remove", absPath, canRemove);
  }

  cancel(absPath: Buffer): Promise<void> {
    return this.requestMany("cancel", [absPath]);
  }

  async requestRestore(absPaths: Buffer[]): Promise<void> {
    await this.requestMany("restore", absPaths);
  }

  /**
   * `lfs hsm_<request> [--archive N] --filelist LIST` per chunk of `batchSize` paths. The MDT
   * checks the rules itself here; a refused chunk rejects with lfs's message.
   */
  async requestMany(
    request: HsmRequestName,
    absPaths: Buffer[],
    options?: HsmRequestOptions,
  ): Promise<void> {
    if (absPaths.length === 0) return;
    const command = REQUEST_COMMAND[request];
    const base = [command];
    if (request === "archive") base.push("--archive", String(options?.archiveId ?? 1));
    const dir = await mkdtemp(join(tmpdir(), "hsmfleet-lfs-"));
    try {
      for (let i = 0; i < absPaths.length; i += this.batchSize) {
        const chunk = absPaths.slice(i, i + this.batchSize);
        const listed = chunk.filter((p) => !p.includes(0x0a));
        const args = chunk.filter((p) => p.includes(0x0a)).map((p) => utf8Arg(p, command));
        const argv = [...base];
        if (listed.length > 0) {
          const list = join(dir, `list-${i}`);
          const parts: Buffer[] = [];
          for (const p of listed) parts.push(p, Buffer.from("\n"));
          await writeFile(list, Buffer.concat(parts));
          argv.push("--filelist", list);
        }
        argv.push(...args);
        await this.lfs(argv, command, chunk[0]!, "utf8", chunk.length);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async setFlags(absPath: Buffer, set: number, clear: number, archiveId?: number): Promise<void> {
    const path = utf8Arg(absPath, "hsm_set");
    if (set !== 0 || archiveId !== undefined) {
      const argv = ["hsm_set", ...flagOptions(set)];
      if (archiveId !== undefined) argv.push("--archive-id", String(archiveId));
      await this.lfs([...argv, path], "hsm_set", absPath);
    }
    if (clear !== 0)
      await this.lfs(["hsm_clear", ...flagOptions(clear), path], "hsm_clear", absPath);
  }

  /**
   * `lfs hsm_import` creates the file itself, so the empty placeholder (as TargetRoot made it) is
   * removed first and its owner and mode are passed on.
   */
  async importReleased(absPath: Buffer, size: number, archiveId: number): Promise<void> {
    const path = utf8Arg(absPath, "hsm_import");
    let st;
    try {
      st = await lstat(absPath);
    } catch (err) {
      throw new FsOperationError(
        "lstat",
        displayPath(absPath),
        errorCode(err),
        errorMessage(err),
        err,
      );
    }
    if (!st.isFile() || st.size !== 0) {
      throw new FsOperationError(
        "hsm_import",
        displayPath(absPath),
        "EINVAL",
        "placeholder must be an empty regular file",
      );
    }
    await unlink(absPath);
    await this.lfs(
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
        path,
      ],
      "hsm_import",
      absPath,
    );
  }

  async markArchived(absPath: Buffer, archiveId: number): Promise<void> {
    await this.setFlags(
      absPath,
      HsmFlag.Exists | HsmFlag.Archived,
      HsmFlag.Dirty | HsmFlag.Released | HsmFlag.Lost,
      archiveId,
    );
  }

  private async single(
    request: HsmRequestName,
    absPath: Buffer,
    rule: (flags: number) => HsmTransition,
    options?: HsmRequestOptions,
  ): Promise<boolean> {
    // Same rules, same message as the emulation, before the MDT would refuse with a bare errno.
    const attrs = await this.state(absPath);
    const t = rule(attrs?.flags ?? 0);
    if (!t.ok) {
      const path = displayPath(absPath);
      throw new HsmRefusedError(
        request,
        path,
        t.reason,
        transitionRefusal(request, path, attrs, t),
      );
    }
    if (request === "release" && ((attrs?.flags ?? 0) & HsmFlag.Released) !== 0) return false;
    await this.requestMany(request, [absPath], options);
    return true;
  }

  private lfs(
    argv: string[],
    operation: string,
    path: Buffer,
    encoding?: "utf8",
    count?: number,
  ): Promise<string>;
  private lfs(
    argv: string[],
    operation: string,
    path: Buffer,
    encoding: "buffer",
    count?: number,
  ): Promise<Buffer>;
  private lfs(
    argv: string[],
    operation: string,
    path: Buffer,
    encoding: "utf8" | "buffer" = "utf8",
    count = 1,
  ): Promise<string | Buffer> {
    return new Promise((resolve, reject) => {
      execFile(
        this.lfsPath,
        argv,
        { encoding, maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (!err) {
            resolve(stdout);
            return;
          }
          const code = errorCode(err);
          if (code === "ENOENT" || code === "EACCES") {
            reject(
              new DependencyError(
                `cannot run ${this.lfsPath} (${code}); install the Lustre client or pass --lfs <path>`,
                { cause: err },
              ),
            );
            return;
          }
          const text = Buffer.isBuffer(stderr) ? stderr.toString("utf8") : stderr;
          const where =
            count > 1 ? `${displayPath(path)} and ${count - 1} more` : displayPath(path);
          reject(
            new FsOperationError(
              `lfs ${operation}`,
              where,
              typeof err.code === "number" ? `exit ${err.code}` : code,
              text.trim() || errorMessage(err),
              err,
            ),
          );
        },
      );
    });
  }
}
