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
import type { BigIntStats } from "node:fs";
import {
  FsOperationError,
  HsmFlag,
  displayPath,
  errorCode,
  errorMessage,
  hsmFlagWords,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import { TargetRoot, UnsafePathError, getXattr, openHsmBackend, setXattr } from "@hsmfleet/fs";
import type { EntryAttributes, HsmBackend } from "@hsmfleet/fs";
import type { ConflictMode, ImportMode, ItemError } from "@hsmfleet/protocol";
import {
  archiveLocationXattr,
  finishImportState,
  formatArchiveLocation,
  formatImportState,
  importStateXattr,
  parseImportState,
} from "./archive-location.js";

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

type Existing = { st: BigIntStats; hsm: HsmAttrs | undefined };

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
  readonly #importXattr: string;

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
    this.#importXattr = importStateXattr(options.hsmXattr);
    this.#stubs =
      this.#hsm !== undefined && !(options.backend === "lustre" && options.mode === "full");
  }

  static async open(options: ImportTargetOptions): Promise<ImportTarget> {
    return new ImportTarget(await TargetRoot.open(options.root), options);
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
    const hsm =
      st.isFile() && this.#hsm ? await this.#hsm.state(this.root.absolute(rel)) : undefined;
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
      if (existing?.st.isDirectory()) {
        // Made by an earlier run or attempt of an import that stopped before its attributes were
        // set: this one's to finish (its shard sets them), not a pre-existing directory.
        return (await this.#pendingDirectory(rel))
          ? { result: "imported" }
          : { result: "preexisting" };
      }
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
        await this.#markDirectory(rel, "pending");
        return {
          result: "imported",
          conflict: this.#conflict(rel, existing, "reimported", "replaced by the directory"),
        };
      }
      if ((await this.root.mkdir(rel, 0o700)) !== "created") return { result: "preexisting" };
      await this.#markDirectory(rel, "pending");
      return { result: "imported" };
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err, "mkdir") };
    }
  }

  /**
   * A directory the import made is recorded `pending` (`<ns>.hsmfleet.import`) until its final
   * attributes are set (`done`), so that a re-run after an interruption finishes it instead of
   * leaving it owner-only. Not on the posix backend, which records nothing.
   */
  async #markDirectory(rel: Buffer, state: "pending" | "done"): Promise<void> {
    if (!this.#hsm) return;
    await setXattr(
      this.root.absolute(rel),
      this.#importXattr,
      formatImportState({ state, etag: "" }),
    );
  }

  async #pendingDirectory(rel: Buffer): Promise<boolean> {
    if (!this.#hsm) return false;
    const record = parseImportState(await getXattr(this.root.absolute(rel), this.#importXattr));
    return record?.state === "pending";
  }

  /** Final attributes of a directory once its own entries exist (so its mtime sticks). */
  async finishDirectory(rel: Buffer, attrs: EntryAttributes): Promise<ItemError | undefined> {
    try {
      // Recorded first: setting the mtime is the last change to the directory's inode data.
      if (await this.#pendingDirectory(rel)) await this.#markDirectory(rel, "done");
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
   *
   * An existing file that this import made itself — on an earlier attempt of the item (a worker
   * died), or in an earlier run of the same import (Ctrl-C, a crash) — is not a conflict: one with
   * the same archive reference (`container/blob`) and the blob's ETag in its import record is
   * finished if it is not ("pending": made a stub, given its data in full mode, its attributes) and
   * left alone if it is ("done", clean, the blob's size and mtime; counted pre-existing, or imported
   * on a redelivery).
   */
  async file(
    rel: Buffer,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    etag: string,
    redelivered: boolean,
  ): Promise<ImportOutcome> {
    try {
      await this.root.ensureParents(rel);
      // Create first: O_EXCL is the real existence check, and on a fresh target almost nothing
      // exists, so the lstat and HSM-state read are only paid when the name is taken.
      if (!redelivered) {
        const created = await this.#tryCreate(rel);
        if (created) return await this.#finishFile(rel, size, attrs, blobName, etag, undefined);
      }
      const existing = await this.#existing(rel);
      let conflict: ItemError | undefined;
      if (existing) {
        const ours = await this.#ownEntry(rel, existing, size, attrs, blobName, etag, redelivered);
        if (ours === "created") {
          // An earlier attempt created it and stopped before recording anything on it.
          return await this.#finishFile(rel, size, attrs, blobName, etag, undefined);
        }
        if (ours === "incomplete") return await this.#resumeFile(rel, existing, size, attrs);
        if (ours === "complete" && (redelivered || this.options.conflict !== "overwrite-always")) {
          // Full mode on a redelivery: the batch this item published before is rebuilt as it was
          // (its download skips files already complete).
          if (redelivered) {
            return this.options.mode === "full"
              ? { result: "imported", download: true }
              : { result: "imported" };
          }
          return { result: "preexisting" };
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
      return await this.#finishFile(rel, size, attrs, blobName, etag, conflict);
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err) };
    }
  }

  /**
   * Whether an existing file is this import's own: "created" (a redelivery finds it empty, 0600,
   * with nothing recorded: the earlier attempt stopped right after creating it), "incomplete" or
   * "complete" (its archive reference and import record name this blob and ETag).
   */
  async #ownEntry(
    rel: Buffer,
    existing: Existing,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    etag: string,
    redelivered: boolean,
  ): Promise<"created" | "incomplete" | "complete" | undefined> {
    if (!existing.st.isFile()) return undefined;
    const flags = existing.hsm?.flags ?? 0;
    const empty =
      existing.st.size === 0n && (Number(existing.st.mode) & 0o7777) === 0o600 && flags === 0;
    if (!this.#hsm) {
      // posix backend: nothing is recorded on the file; only a redelivery may take it as its own.
      if (!redelivered) return undefined;
      if (empty) return "created";
      return existing.st.size === BigInt(size) && (existing.st.blocks === 0n || size === 0)
        ? "incomplete"
        : undefined;
    }
    const abs = this.root.absolute(rel);
    const [location, record] = await Promise.all([
      getXattr(abs, this.#locationXattr),
      getXattr(abs, this.#importXattr),
    ]);
    const state = parseImportState(record);
    const ours =
      location !== undefined &&
      location.equals(formatArchiveLocation(this.options.container, blobName)) &&
      state !== undefined &&
      state.etag === etag;
    if (!ours) return redelivered && empty && location === undefined ? "created" : undefined;
    if ((flags & HsmFlag.Dirty) !== 0) return undefined;
    // Killed before the stub's size was set (flags 0 then: no HSM state yet).
    if (existing.st.size !== BigInt(size) && !(existing.st.size === 0n && flags === 0))
      return undefined;
    if (state.state === "pending") return "incomplete";
    // Finished once; written to since (a new mtime) is no longer the blob's copy.
    if (existing.st.mtimeNs / 1_000_000_000n !== BigInt(Math.floor(attrs.mtimeSec)))
      return undefined;
    if (this.options.mode === "full") {
      const archived = (flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Released) === 0;
      return archived ? "complete" : "incomplete";
    }
    return isClean(existing.hsm) ? "complete" : "incomplete";
  }

  /** Finishes a file an earlier attempt or run of this import left incomplete. */
  async #resumeFile(
    rel: Buffer,
    existing: Existing,
    size: number,
    attrs: EntryAttributes,
  ): Promise<ImportOutcome> {
    const abs = this.root.absolute(rel);
    if ((existing.hsm?.flags ?? 0) === 0) {
      // Stopped before the HSM state: no data was ever written into it, so it starts again from an
      // empty placeholder (its xattrs may occupy a block, which importReleased would take for data).
      if (this.#hsm && this.#stubs) {
        if (existing.st.size !== 0n) {
          const fh = await this.root.openExisting(rel);
          try {
            await fh.truncate(0);
          } finally {
            await fh.close();
          }
        }
        await this.#hsm.importReleased(abs, size, this.options.archiveId);
      } else if (existing.st.size !== BigInt(size)) {
        const fh = await this.root.openExisting(rel);
        try {
          await fh.truncate(size);
        } finally {
          await fh.close();
        }
      }
    }
    if (this.options.mode === "full") return { result: "imported", download: true };
    await this.root.setAttributes(rel, attrs);
    await finishImportState(abs, this.options.hsmXattr);
    return { result: "imported" };
  }

  async #finishFile(
    rel: Buffer,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    etag: string,
    conflict: ItemError | undefined,
  ): Promise<ImportOutcome> {
    const abs = this.root.absolute(rel);
    const record = async () => {
      await setXattr(
        abs,
        this.#locationXattr,
        formatArchiveLocation(this.options.container, blobName),
      );
      await setXattr(abs, this.#importXattr, formatImportState({ state: "pending", etag }));
    };
    // What the file is recorded first, so that a crash at any later step leaves a file a re-run
    // recognises as its own (lfs hsm_import makes a new file: there it comes right after).
    const lustreImport = this.#hsm?.kind === "lustre" && this.#stubs;
    if (this.#hsm && !lustreImport) await record();
    if (this.#hsm && this.#stubs) {
      await this.#hsm.importReleased(abs, size, this.options.archiveId);
    } else {
      const fh = await this.root.openExisting(rel);
      try {
        await fh.truncate(size);
      } finally {
        await fh.close();
      }
    }
    if (lustreImport) await record();
    if (this.options.mode === "full") {
      // Owner-only until the data is in; the download sets the final attributes.
      return { result: "imported", download: true, ...(conflict ? { conflict } : {}) };
    }
    await this.root.setAttributes(rel, attrs);
    if (this.#hsm) {
      await setXattr(abs, this.#importXattr, formatImportState({ state: "done", etag }));
    }
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
    await this.#hsm!.release(this.root.absolute(rel));
  }

  /**
   * After a full-mode download: final attributes, the import record "done", then HSM state "exists
   * archived" (0x9) — in that order, so a file in state 0x9 is complete in every respect.
   */
  async completeDownload(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    await this.root.setAttributes(rel, attrs);
    if (this.#hsm) {
      const abs = this.root.absolute(rel);
      await finishImportState(abs, this.options.hsmXattr);
      await this.#hsm.markArchived(abs, this.options.archiveId);
    }
  }

  /**
   * Whether a full-mode file is already complete (its import record "done", state "exists
   * archived", the blob's size): a redelivered download batch skips it instead of fetching it again.
   */
  async downloadComplete(rel: Buffer, size: number): Promise<boolean> {
    if (!this.#hsm) return false;
    const existing = await this.#existing(rel);
    if (!existing?.st.isFile() || existing.st.size !== BigInt(size)) return false;
    const flags = existing.hsm?.flags ?? 0;
    if ((flags & HsmFlag.Archived) === 0 || (flags & (HsmFlag.Released | HsmFlag.Dirty)) !== 0)
      return false;
    const record = parseImportState(await getXattr(this.root.absolute(rel), this.#importXattr));
    return record?.state === "done";
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
