/**
 * The file-system side of an import: creates directories, symlinks and files under the target root
 * (never outside it, never through a symlink: TargetRoot), turns files into released stubs through
 * the HSM backend, and decides what happens to entries that already exist (the conflict modes).
 *
 * Conflict modes (AMLFS's meaning; docs/import.md):
 *   fail              a pre-existing file or symlink is an error (counts towards --max-errors)
 *   skip              it is left as it is
 *   overwrite-dirty   clean (archived, not dirty, same size as the blob): attributes updated;
 *                     anything else (dirty, never archived, other size or type): deleted and re-imported
 *   overwrite-always  dirty/new/other: deleted and re-imported; clean: released (namespace mode) or
 *                     re-imported (full mode), attributes updated
 * Pre-existing directories are merged (counted, not conflicts); their attributes are updated in
 * the overwrite modes only.
 */
import { constants } from "node:fs";
import {
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  canRelease,
  decodeHsmAttrs,
  displayPath,
  encodeHsmAttrs,
  errorCode,
  errorMessage,
  hsmFlagWords,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import {
  ARCHIVED_FLAGS,
  RELEASED_STUB_FLAGS,
  TargetRoot,
  UnsafePathError,
  dataVersion,
  jobRootFor,
  openHsmBackend,
} from "@hsmfleet/fs";
import type { EntryAttributes, EntryStat, HsmBackend } from "@hsmfleet/fs";
import type { ConflictMode, ImportMode, ItemError } from "@hsmfleet/protocol";
import { archiveLocationXattr, formatArchiveLocation } from "../runtime/archive-location.js";

export interface ImportTargetOptions {
  root: string;
  mode: ImportMode;
  conflict: ConflictMode;
  archiveId: number;
  /**
   * "hsm-emulation" (released stubs via trusted.hsm), "lustre" (lfs hsm_import) or "posix" (full
   * mode only, no HSM state).
   */
  backend: string;
  hsmXattr: string;
  /** lfs binary for the lustre backend. */
  lfsPath?: string | undefined;
  container: string;
}

/** What happened to one entry. `conflict` is set for every pre-existing file or symlink. */
export interface ImportOutcome {
  result: "imported" | "preexisting" | "skipped" | "failed";
  /** Full mode: the file exists (as a stub) and its data must be downloaded. */
  download?: boolean;
  conflict?: ItemError;
  error?: ItemError;
}

type Existing = { st: EntryStat; hsm: HsmAttrs | undefined };

const describeExisting = (e: Existing): string => {
  if (e.st.isDirectory()) return "directory";
  if (e.st.isSymbolicLink()) return "symlink";
  if (!e.st.isFile()) return "special file";
  const flags = e.hsm?.flags ?? 0;
  const words = hsmFlagWords(flags);
  return `file (0x${flags.toString(16).padStart(8, "0")})${words.length ? " " + words.join(" ") : " new"}`;
};

/** Archived and not dirty (a released stub is clean too). */
const isClean = (hsm: HsmAttrs | undefined): boolean => {
  const flags = hsm?.flags ?? 0;
  return (flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Dirty) === 0;
};

export class ImportTarget {
  readonly root: TargetRoot;
  readonly options: ImportTargetOptions;
  readonly #hsm: HsmBackend | undefined;
  /**
   * Files start as released stubs made by the HSM backend — except on Lustre in full mode, where a
   * released file would be restored by the copytool on the first write: there the data goes into
   * a plain file that is marked "exists archived" (lfs hsm_set) once it is in.
   */
  readonly #stubs: boolean;
  readonly #locationXattr: string;

  private constructor(root: TargetRoot, options: ImportTargetOptions) {
    this.root = root;
    this.options = options;
    this.#hsm =
      options.backend === "posix"
        ? undefined
        : openHsmBackend({
            backend: options.backend === "lustre" ? "lustre" : "hsm-emulation",
            xattr: options.hsmXattr,
            lfsPath: options.lfsPath,
          });
    this.#locationXattr = archiveLocationXattr(options.hsmXattr);
    this.#stubs =
      this.#hsm !== undefined && !(options.backend === "lustre" && options.mode === "full");
  }

  /** Opens the target through the process's shared JobRoot of `options.root` (its dir fd). */
  static async open(options: ImportTargetOptions): Promise<ImportTarget> {
    return new ImportTarget(TargetRoot.of(await jobRootFor(options.root)), options);
  }

  /**
   * HSM state of a regular file. The emulation backend's xattr is read through an fd of the file
   * opened beneath the root (nothing followed); a clean archived file whose data version no
   * longer matches its size and mtime is reported (and persisted) DIRTY, as the backend's own
   * state() does. The lustre backend asks `lfs` by path (see docs/security.md, Path safety).
   */
  async #hsmState(rel: Buffer, st: EntryStat): Promise<HsmAttrs | undefined> {
    if (!this.#hsm) return undefined;
    if (this.#hsm.kind !== "hsm-emulation") return this.#hsm.state(this.root.absolute(rel));
    const jr = this.root.jobRoot;
    const value = await jr.getXattr(rel, this.#hsm.xattr);
    if (value === undefined) return undefined;
    let attrs: HsmAttrs;
    try {
      attrs = decodeHsmAttrs(value);
    } catch (err) {
      throw new FsOperationError("getxattr", jr.display(rel), "EINVAL", errorMessage(err), err);
    }
    const flags = attrs.flags;
    if (
      attrs.archiveVersion === 0n ||
      (flags & HsmFlag.Archived) === 0 ||
      (flags & HsmFlag.Dirty) !== 0
    )
      return attrs;
    const version = dataVersion(
      st.size,
      BigInt(st.mtimeSec) * 1_000_000_000n + BigInt(st.mtimeNsec),
    );
    if (version === attrs.archiveVersion) return attrs;
    const dirty = { ...attrs, flags: (flags | HsmFlag.Dirty) & ~HsmFlag.Released };
    await jr.setXattr(rel, this.#hsm.xattr, encodeHsmAttrs(dirty));
    return dirty;
  }

  /** lfs hsm_import's effect on the emulation backend, fd-relative: a sparse released stub. */
  async #importReleased(rel: Buffer, size: number): Promise<void> {
    const hsm = this.#hsm!;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.importReleased(this.root.absolute(rel), size, this.options.archiveId);
      return;
    }
    const jr = this.root.jobRoot;
    const { handle, stat } = await jr.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      if ((stat.mode & 0o170000) !== 0o100000) {
        throw new FsOperationError("open", jr.display(rel), "EINVAL", "not a regular file");
      }
      const stub = stat.size === size && stat.blocks === 0n;
      if (stat.size !== 0 && !stub) {
        throw new FsOperationError(
          "fstat",
          jr.display(rel),
          "EINVAL",
          `file already has data (${stat.size} bytes); a released stub must start empty`,
        );
      }
      if (stat.size !== size) await handle.truncate(size);
    } finally {
      await handle.close();
    }
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({
        compat: HSM_COMPAT,
        flags: RELEASED_STUB_FLAGS,
        archiveId: BigInt(this.options.archiveId),
        archiveVersion: 0n,
      }),
    );
  }

  /** "Exists archived" (0x9) after a download, fd-relative on the emulation backend. */
  async #markArchived(rel: Buffer): Promise<void> {
    const hsm = this.#hsm!;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.markArchived(this.root.absolute(rel), this.options.archiveId);
      return;
    }
    const jr = this.root.jobRoot;
    const st = await this.root.lstat(rel);
    if (!st?.isFile()) {
      throw new FsOperationError(
        "lstat",
        jr.display(rel),
        st ? "EINVAL" : "ENOENT",
        "not a regular file",
      );
    }
    const value = await jr.getXattr(rel, hsm.xattr);
    const previous = value && value.length >= 24 ? decodeHsmAttrs(value) : undefined;
    const keep = HsmFlag.NoRelease | HsmFlag.NoArchive;
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({
        compat: previous?.compat ?? HSM_COMPAT,
        flags: ARCHIVED_FLAGS | ((previous?.flags ?? 0) & keep),
        archiveId: BigInt(this.options.archiveId),
        archiveVersion: previous?.archiveVersion ?? 0n,
      }),
    );
  }

  #error(rel: Buffer, err: unknown, operation?: string): ItemError {
    return {
      path: rel,
      operation:
        operation ?? (err instanceof FsOperationError ? err.operation : errorCode(err) || "import"),
      code: err instanceof UnsafePathError ? "UnsafePath" : errorCode(err),
      message: errorMessage(err),
      retryable: false,
    };
  }

  async #existing(rel: Buffer): Promise<Existing | undefined> {
    const st = await this.root.lstat(rel);
    if (!st) return undefined;
    const hsm = st.isFile() && this.#hsm ? await this.#hsmState(rel, st) : undefined;
    return { st, hsm };
  }

  #conflict(rel: Buffer, existing: Existing, resolution: string, detail: string): ItemError {
    return {
      path: rel,
      operation: describeExisting(existing),
      code: resolution,
      message: detail,
      retryable: false,
    };
  }

  /** Removes a non-directory in the way (overwrite modes). */
  async #remove(rel: Buffer): Promise<void> {
    await this.root.unlink(rel);
  }

  /**
   * Directory `rel` for a directory blob or prefix. Returns whether it pre-existed; a non-directory
   * in the way is a conflict (replaced in the overwrite modes).
   */
  async directory(rel: Buffer): Promise<ImportOutcome> {
    try {
      await this.root.ensureParents(rel);
      const existing = await this.#existing(rel);
      if (existing?.st.isDirectory()) return { result: "preexisting" };
      if (existing) {
        const overwrite = this.options.conflict.startsWith("overwrite");
        if (!overwrite) {
          const resolution = this.options.conflict === "skip" ? "skipped" : "failed";
          const conflict = this.#conflict(
            rel,
            existing,
            resolution,
            `a ${describeExisting(existing)} is where the directory belongs; its subtree is not imported`,
          );
          return resolution === "skipped"
            ? { result: "skipped", conflict }
            : {
                result: "failed",
                conflict,
                error: {
                  ...conflict,
                  operation: "mkdir",
                  code: "EEXIST",
                  message: `${conflict.message} (--conflict fail)`,
                },
              };
        }
        await this.#remove(rel);
        await this.root.mkdir(rel, 0o700);
        return {
          result: "imported",
          conflict: this.#conflict(rel, existing, "reimported", "replaced by the directory"),
        };
      }
      return {
        result: (await this.root.mkdir(rel, 0o700)) === "created" ? "imported" : "preexisting",
      };
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err, "mkdir") };
    }
  }

  /** Final attributes of a directory once its own entries exist (so its mtime sticks). */
  async finishDirectory(rel: Buffer, attrs: EntryAttributes): Promise<ItemError | undefined> {
    try {
      await this.root.setAttributes(rel, attrs);
      return undefined;
    } catch (err) {
      return this.#error(rel, err, "setattr");
    }
  }

  /** A symlink blob: created with its target stored verbatim (never resolved). */
  async symlink(
    rel: Buffer,
    target: Buffer,
    attrs: EntryAttributes,
    redelivered: boolean,
  ): Promise<ImportOutcome> {
    try {
      await this.root.ensureParents(rel);
      if (!redelivered && (await this.#tryCreate(rel, target))) {
        await this.root.setAttributes(rel, attrs);
        return { result: "imported" };
      }
      const existing = await this.#existing(rel);
      let conflict: ItemError | undefined;
      if (existing) {
        const same = existing.st.isSymbolicLink() && (await this.root.readlink(rel)).equals(target);
        if (same && redelivered) {
          await this.root.setAttributes(rel, attrs);
          return { result: "imported" };
        }
        const decided = await this.#decide(rel, existing, same, attrs);
        if (decided.result !== "imported") return decided;
        conflict = decided.conflict;
        if (!decided.replace) return { result: "preexisting", ...(conflict ? { conflict } : {}) };
      }
      await this.root.symlink(rel, target);
      await this.root.setAttributes(rel, attrs);
      return { result: "imported", ...(conflict ? { conflict } : {}) };
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err, "symlink") };
    }
  }

  /**
   * A file blob: a released stub of `size` bytes (namespace mode, and full mode before its data
   * arrives) or, on the posix backend, an empty file of that size. Attributes are final except in
   * full mode, where the download sets them after the data.
   */
  async file(
    rel: Buffer,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    redelivered: boolean,
  ): Promise<ImportOutcome> {
    try {
      await this.root.ensureParents(rel);
      // Create first: O_EXCL is the real existence check, and on a fresh target almost nothing
      // exists, so the lstat and HSM-state read are only paid when the name is taken.
      if (!redelivered) {
        const created = await this.#tryCreate(rel);
        if (created) return await this.#finishFile(rel, size, attrs, blobName, undefined);
      }
      const existing = await this.#existing(rel);
      let conflict: ItemError | undefined;
      if (existing) {
        const ours = redelivered ? this.#ourEntry(existing, size) : undefined;
        if (ours === "created") {
          // An earlier attempt created it and stopped before making it a stub.
          return await this.#finishFile(rel, size, attrs, blobName, undefined);
        }
        if (ours === "stub") {
          // A previous attempt of this item made it. Full mode: its download may already be under
          // way (the batch went out before the crash) and redoes everything it needs itself.
          if (this.options.mode === "full") return { result: "imported", download: true };
          return await this.#finishFile(rel, size, attrs, blobName, undefined, true);
        }
        const sameFile =
          existing.st.isFile() && existing.st.size === BigInt(size) && isClean(existing.hsm);
        const decided = await this.#decide(rel, existing, sameFile, attrs, size);
        if (decided.result !== "imported") return decided;
        conflict = decided.conflict;
        if (!decided.replace) return { result: "preexisting", ...(conflict ? { conflict } : {}) };
      }
      const fh = await this.root.createFile(rel, 0o600);
      await fh.close();
      return await this.#finishFile(rel, size, attrs, blobName, conflict);
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err) };
    }
  }

  /**
   * On a redelivery: whether an existing file is what an earlier attempt of this item made —
   * "created" (still empty, 0600, no HSM state: it stopped right after creating it) or "stub".
   */
  #ourEntry(existing: Existing, size: number): "created" | "stub" | undefined {
    if (!existing.st.isFile()) return undefined;
    if (
      existing.st.size === 0n &&
      (Number(existing.st.mode) & 0o7777) === 0o600 &&
      (existing.hsm?.flags ?? 0) === 0
    )
      return "created";
    if (existing.st.size !== BigInt(size)) return undefined;
    if (!this.#stubs) return existing.st.blocks === 0n || size === 0 ? "stub" : undefined;
    return ((existing.hsm?.flags ?? 0) & HsmFlag.Released) !== 0 ? "stub" : undefined;
  }

  async #finishFile(
    rel: Buffer,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    conflict: ItemError | undefined,
    alreadyStub = false,
  ): Promise<ImportOutcome> {
    if (this.#hsm && this.#stubs) {
      // A stub from an earlier attempt already is one (its xattrs may occupy a block, which
      // importReleased would take for data).
      if (!alreadyStub) await this.#importReleased(rel, size);
    } else {
      const fh = await this.root.openExisting(rel);
      try {
        await fh.truncate(size);
      } finally {
        await fh.close();
      }
    }
    if (this.#hsm) {
      await this.root.jobRoot.setXattr(
        rel,
        this.#locationXattr,
        formatArchiveLocation(this.options.container, blobName),
      );
    }
    if (this.options.mode === "full") {
      // Owner-only until the data is in; the download sets the final attributes.
      return { result: "imported", download: true, ...(conflict ? { conflict } : {}) };
    }
    await this.root.setAttributes(rel, attrs);
    return { result: "imported", ...(conflict ? { conflict } : {}) };
  }

  /**
   * A pre-existing entry where a file or symlink belongs. `same`: it already is what the blob
   * describes (clean file of that size / symlink to that target). Returns "imported" with
   * `replace` when the caller must (re)create the entry; otherwise the final outcome.
   */
  async #decide(
    rel: Buffer,
    existing: Existing,
    same: boolean,
    attrs: EntryAttributes,
    size?: number,
  ): Promise<ImportOutcome & { replace?: boolean }> {
    const mode = this.options.conflict;
    if (mode === "fail") {
      const conflict = this.#conflict(
        rel,
        existing,
        "failed",
        "the entry already exists (--conflict fail)",
      );
      return {
        result: "failed",
        conflict,
        error: {
          ...conflict,
          operation: "import",
          code: "EEXIST",
          message: `${describeExisting(existing)} already exists (--conflict fail)`,
        },
      };
    }
    if (mode === "skip") {
      return {
        result: "skipped",
        conflict: this.#conflict(rel, existing, "skipped", "left as it was"),
      };
    }
    if (existing.st.isDirectory()) {
      const conflict = this.#conflict(
        rel,
        existing,
        "failed",
        "a directory is in the way; directories are never deleted",
      );
      return {
        result: "failed",
        conflict,
        error: {
          ...conflict,
          operation: "import",
          code: "EISDIR",
          message: "a directory is where a file or symlink belongs; directories are never deleted",
        },
      };
    }
    const clean = existing.st.isFile() && isClean(existing.hsm);
    if (same && (mode === "overwrite-dirty" || !existing.st.isFile())) {
      await this.root.setAttributes(rel, attrs);
      return {
        result: "imported",
        replace: false,
        conflict: this.#conflict(
          rel,
          existing,
          "attributes-updated",
          "clean; attributes set from the blob",
        ),
      };
    }
    if (
      mode === "overwrite-always" &&
      same &&
      clean &&
      this.options.mode === "namespace" &&
      this.#hsm !== undefined &&
      size !== undefined
    ) {
      await this.#release(rel);
      await this.root.setAttributes(rel, attrs);
      return {
        result: "imported",
        replace: false,
        conflict: this.#conflict(
          rel,
          existing,
          "released",
          "clean; data released, attributes set from the blob",
        ),
      };
    }
    await this.#remove(rel);
    return {
      result: "imported",
      replace: true,
      conflict: this.#conflict(
        rel,
        existing,
        "reimported",
        clean
          ? "deleted and imported again"
          : "dirty or never archived: deleted and imported again",
      ),
    };
  }

  /** Drops a clean file's data, keeping its size (`lfs hsm_release`; the backend checks the rules). */
  async #release(rel: Buffer): Promise<void> {
    const hsm = this.#hsm!;
    if (hsm.kind !== "hsm-emulation") {
      await hsm.release(this.root.absolute(rel));
      return;
    }
    // The emulation backend's release, fd-relative: the data is dropped through an fd opened
    // beneath the target (never through a swapped directory), the size and mtime kept.
    const jr = this.root.jobRoot;
    const st = await this.root.lstat(rel);
    if (!st?.isFile()) {
      throw new FsOperationError("release", jr.display(rel), "EINVAL", "not a regular file");
    }
    const attrs = await this.#hsmState(rel, st);
    const allowed = canRelease(attrs?.flags ?? 0);
    if (!allowed.ok) {
      throw new FsOperationError("release", jr.display(rel), "EPERM", allowed.reason);
    }
    if (((attrs?.flags ?? 0) & HsmFlag.Released) !== 0) return;
    const { handle, stat } = await jr.openFile(rel, constants.O_WRONLY | constants.O_NONBLOCK);
    let version: bigint;
    try {
      if (stat.ino !== st.ino || stat.dev !== st.dev) {
        throw new FsOperationError("release", jr.display(rel), "ESTALE", "replaced meanwhile");
      }
      const now = await handle.stat({ bigint: true });
      await handle.truncate(0);
      await handle.truncate(Number(now.size));
      await handle.utimes(
        new Date(Number(now.atimeNs / 1_000_000n)),
        Number(now.mtimeNs / 1000n) / 1e6,
      );
      const after = await handle.stat({ bigint: true });
      version = dataVersion(after.size, after.mtimeNs);
    } finally {
      await handle.close();
    }
    await jr.setXattr(
      rel,
      hsm.xattr,
      encodeHsmAttrs({ ...attrs!, flags: allowed.flags, archiveVersion: version }),
    );
  }

  /** After a full-mode download: final attributes, then HSM state "exists archived" (0x9). */
  async completeDownload(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    await this.root.setAttributes(rel, attrs);
    if (this.#hsm) await this.#markArchived(rel);
  }

  /**
   * After a full-mode download failed for good (disk full, read-only target, a blob that changed,
   * …): leaves nothing that looks complete. A released stub (hsm-emulation, and Lustre namespace)
   * keeps its released state and size but loses the partial data (truncated to 0 and back), which
   * also frees the space; a plain file (posix backend, Lustre full mode), which no state would mark
   * incomplete, is removed. Best effort: returns why the clean-up failed, if it did.
   */
  async abandonDownload(rel: Buffer, size: number): Promise<string | undefined> {
    try {
      if (this.#hsm && this.#stubs) {
        const fh = await this.root.openExisting(rel);
        try {
          await fh.truncate(0);
          await fh.truncate(size);
        } finally {
          await fh.close();
        }
      } else {
        await this.root.unlink(rel);
      }
      return undefined;
    } catch (err) {
      if (errorCode(err) === "ENOENT") return undefined;
      return errorMessage(err);
    }
  }

  /**
   * Creates the file (empty, 0600) or, with `linkTarget`, the symlink; false when the name is
   * taken (EEXIST), so the caller goes through the conflict rules.
   */
  async #tryCreate(rel: Buffer, linkTarget?: Buffer): Promise<boolean> {
    try {
      if (linkTarget) await this.root.symlink(rel, linkTarget);
      else await (await this.root.createFile(rel, 0o600)).close();
      return true;
    } catch (err) {
      if (errorCode(err) === "EEXIST") return false;
      throw err;
    }
  }

  /** Printable absolute path for messages. */
  display(rel: Buffer): string {
    return displayPath(this.root.absolute(rel));
  }
}
