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
import {
  FsOperationError,
  HsmFlag,
  displayPath,
  errorCode,
  errorMessage,
  testSeam,
} from "@hsmfleet/core";
import { TargetRoot, UnsafePathError, jobRootFor, openHsmBackend } from "@hsmfleet/fs";
import type { EntryAttributes, HsmBackend } from "@hsmfleet/fs";
import type { ConflictMode, ImportMode, ItemError } from "@hsmfleet/protocol";
import {
  archiveLocationXattr,
  finishImportState,
  formatArchiveLocation,
  formatImportState,
  importStateXattr,
  parseImportState,
} from "../runtime/archive-location.js";
import { conflictOf, decideConflict, describeExisting, isClean } from "./import-conflict.js";
import type { ConflictTarget, Existing, ImportOutcome } from "./import-conflict.js";
import { smallFileJobsEnabled } from "../runtime/small-file-switch.js";
import { finishFreshStub } from "./fresh-stub.js";
import { createSized, tryCreate } from "./new-entry.js";
import type { MakeParents } from "./new-entry.js";
import { ownEntry } from "./own-entry.js";
import type { OwnEntryTarget } from "./own-entry.js";
import { TargetHsm } from "./target-hsm.js";

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

export type { ImportOutcome } from "./import-conflict.js";

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
  /** The backend's operations on the target's files (fd-relative on the emulation backend). */
  readonly beneath: TargetHsm | undefined;
  readonly #conflictTarget: ConflictTarget;
  readonly #ownTarget: OwnEntryTarget;

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
    this.beneath = this.#hsm && new TargetHsm(root, this.#hsm, options.archiveId);
    this.#stubs =
      this.#hsm !== undefined && !(options.backend === "lustre" && options.mode === "full");
    this.#conflictTarget = {
      root,
      conflict: options.conflict,
      mode: options.mode,
      hsm: this.#hsm,
      beneath: this.beneath,
    };
    this.#ownTarget = {
      root: root.jobRoot,
      hsm: this.#hsm !== undefined,
      mode: options.mode,
      container: options.container,
      hsmXattr: options.hsmXattr,
    };
  }

  /** Opens the target through the process's shared JobRoot of `options.root` (its dir fd). */
  static async open(options: ImportTargetOptions): Promise<ImportTarget> {
    return new ImportTarget(TargetRoot.of(await jobRootFor(options.root)), options);
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
    const hsm = st.isFile() && this.#hsm ? await this.beneath!.state(rel, st) : undefined;
    return { st, hsm };
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
          const conflict = conflictOf(
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
        await this.root.unlink(rel);
        await this.root.mkdir(rel, 0o700);
        await this.#markDirectory(rel, "pending");
        return {
          result: "imported",
          conflict: conflictOf(rel, existing, "reimported", "replaced by the directory"),
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
    await this.root.jobRoot.setXattr(
      rel,
      this.#importXattr,
      formatImportState({ state, etag: "" }),
    );
  }

  async #pendingDirectory(rel: Buffer): Promise<boolean> {
    if (!this.#hsm) return false;
    const record = parseImportState(await this.root.jobRoot.getXattr(rel, this.#importXattr));
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
      if (!redelivered && (await tryCreate(this.root, rel, target))) {
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
        const decided = await decideConflict(this.#conflictTarget, rel, existing, same, attrs);
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
    /** Makes missing parents before the mkdir -p, only when the create finds one missing. */
    makeParents?: MakeParents,
  ): Promise<ImportOutcome> {
    try {
      // Create first (parents made when it says they are missing: new-entry.ts): O_EXCL is the
      // real existence check, and on a fresh target almost nothing exists, so the lstat and
      // HSM-state read are only paid when the name is taken.
      if (!redelivered) {
        // posix backend: sized through the descriptor that made it (not reopened for that).
        const sizeNow = this.#hsm ? undefined : size;
        const created = await tryCreate(this.root, rel, undefined, sizeNow, makeParents);
        if (created)
          return await this.#finishFile(rel, size, attrs, blobName, etag, undefined, !this.#hsm);
      }
      const existing = await this.#existing(rel);
      let conflict: ItemError | undefined;
      if (existing) {
        const ours = await ownEntry(
          this.#ownTarget,
          rel,
          existing,
          size,
          attrs,
          blobName,
          etag,
          redelivered,
        );
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
        const decided = await decideConflict(
          this.#conflictTarget,
          rel,
          existing,
          sameFile,
          attrs,
          size,
        );
        if (decided.result !== "imported") return decided;
        conflict = decided.conflict;
        if (!decided.replace) return { result: "preexisting", ...(conflict ? { conflict } : {}) };
      }
      await createSized(this.root, rel, this.#hsm ? undefined : size, makeParents);
      return await this.#finishFile(rel, size, attrs, blobName, etag, conflict, !this.#hsm);
    } catch (err) {
      return { result: "failed", error: this.#error(rel, err) };
    }
  }

  /** Finishes a file an earlier attempt or run of this import left incomplete. */
  async #resumeFile(
    rel: Buffer,
    existing: Existing,
    size: number,
    attrs: EntryAttributes,
  ): Promise<ImportOutcome> {
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
        await this.beneath!.importReleased(rel, size);
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
    await finishImportState(this.root.jobRoot, rel, this.options.hsmXattr);
    return { result: "imported" };
  }

  async #finishFile(
    rel: Buffer,
    size: number,
    attrs: EntryAttributes,
    blobName: string,
    etag: string,
    conflict: ItemError | undefined,
    /** posix backend: the caller already gave the new file its size. */
    sized = false,
  ): Promise<ImportOutcome> {
    const jr = this.root.jobRoot;
    testSeam("file-before-record", jr.absolute(rel));
    const stub =
      this.#stubs && smallFileJobsEnabled() ? this.beneath?.releasedStubXattr() : undefined;
    if (stub) {
      // Emulation backend: two native jobs after the create (fresh-stub.ts).
      const full = this.options.mode === "full";
      await finishFreshStub(jr, rel, {
        location: [this.#locationXattr, formatArchiveLocation(this.options.container, blobName)],
        importXattr: this.#importXattr,
        etag,
        size,
        hsm: stub,
        attrs: full ? undefined : attrs,
      });
      return {
        result: "imported",
        ...(full ? { download: true } : {}),
        ...(conflict ? { conflict } : {}),
      };
    }
    const record = async () => {
      await jr.setXattr(
        rel,
        this.#locationXattr,
        formatArchiveLocation(this.options.container, blobName),
      );
      await jr.setXattr(rel, this.#importXattr, formatImportState({ state: "pending", etag }));
    };
    // What the file is recorded first, so that a crash at any later step leaves a file a re-run
    // recognises as its own (lfs hsm_import makes a new file: there it comes right after).
    const lustreImport = this.#hsm?.kind === "lustre" && this.#stubs;
    if (this.#hsm && !lustreImport) await record();
    if (this.#hsm && this.#stubs) {
      await this.beneath!.importReleased(rel, size);
    } else if (!sized) {
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
      await jr.setXattr(rel, this.#importXattr, formatImportState({ state: "done", etag }));
    }
    return { result: "imported", ...(conflict ? { conflict } : {}) };
  }

  /**
   * After a full-mode download: final attributes, the import record "done", then HSM state "exists
   * archived" (0x9) — in that order, so a file in state 0x9 is complete in every respect.
   */
  async completeDownload(rel: Buffer, attrs: EntryAttributes): Promise<void> {
    await this.root.setAttributes(rel, attrs);
    if (this.#hsm) {
      await finishImportState(this.root.jobRoot, rel, this.options.hsmXattr);
      await this.beneath!.markArchived(rel);
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
    const record = parseImportState(await this.root.jobRoot.getXattr(rel, this.#importXattr));
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

  /** Printable absolute path for messages. */
  display(rel: Buffer): string {
    return displayPath(this.root.absolute(rel));
  }
}
