/**
 * Applies one blob change (an Event Grid Blob Storage event, see protocol blob-change.ts) to an
 * import target with AMLFS auto-import semantics, through the import job's own code paths
 * (ImportTarget: creation beneath the target root, conflict modes, import records).
 *
 * An event says *that* a blob changed; what is applied is the blob as it is now (its properties
 * read again), so a duplicate or late event cannot put back an older state:
 *   created            the blob (file, symlink or hdi_isfolder directory stub) is imported as the
 *                      import job would (namespace mode: a released stub); a blob that no longer
 *                      exists is counted `vanished` and nothing is made.
 *   deleted            only with enableDeletions, only when the blob is really gone, and only a file
 *                      that is not dirty (AMLFS's rule); a symlink is removed; a directory stub's
 *                      directory is removed when empty.
 *   renamed            the source as deleted, then the destination as created.
 *   directoryCreated   the directory (attributes from its blob, when it has one).
 *   directoryDeleted   the subtree as deleted (clean files and symlinks removed, directories left
 *                      empty removed; dirty files and their parents kept).
 *   directoryRenamed   the source subtree as deleted, then every blob under the destination.
 */
import { readdir } from "node:fs/promises";
import { closeSync, constants } from "node:fs";
import {
  BlobNameError,
  attributesFromMetadata,
  isFolderStub,
  isSymlinkBlob,
  pathForBlobName,
} from "@hsmfleet/core";
import type { BlobEntryKind, HsmAttrs, PosixAttributes } from "@hsmfleet/core";
import type { BlobContainer, BlobProperties } from "@hsmfleet/blob";
import type { EntryAttributes, EntryStat } from "@hsmfleet/fs";
import { emptyAutoImportCounters } from "@hsmfleet/protocol";
import type { AutoImportCounters, BlobChange, ItemError } from "@hsmfleet/protocol";
import type { ImportOutcome, ImportTarget } from "../import/import-target.js";
import { isClean } from "../import/import-conflict.js";

/** Counters of applied changes (AMLFS autoImportJobs field names; protocol counters.ts). */
export type { AutoImportCounters };
export { emptyAutoImportCounters };

export interface BlobChangeApplierOptions {
  /** Apply deletions (AMLFS `enableDeletions`); default false. */
  enableDeletions?: boolean;
  /**
   * HSM state of a file; undefined when it has none. With an HSM backend (`hasHsm`) a file with no
   * state was never archived (made here, not imported) and is never removed; without one (posix
   * backend) every file counts as clean.
   */
  hsmState: (rel: Buffer, st: EntryStat) => Promise<HsmAttrs | undefined>;
  hasHsm: boolean;
  /**
   * `--mode full`: writes the data of a file just made (or made again) as a stub and gives it its
   * final attributes and state, through the import job's download path (autoimport-download.ts).
   * Returns the error of a download that failed (the file is left looking incomplete).
   */
  download?: FileDownload | undefined;
}

export type FileDownload = (
  rel: Buffer,
  blobName: string,
  size: number,
  attrs: EntryAttributes,
) => Promise<ItemError | undefined>;

export interface AppliedChange {
  counters: AutoImportCounters;
  conflicts: ItemError[];
  errors: ItemError[];
}

const toEntryAttributes = (a: PosixAttributes, fallback: Date | undefined): EntryAttributes => ({
  mode: a.mode,
  uid: a.uid,
  gid: a.gid,
  mtimeSec: a.mtimeSec ?? Math.floor((fallback?.getTime() ?? Date.now()) / 1000),
});

const O_DIRECTORY = constants.O_DIRECTORY;

export class BlobChangeApplier {
  readonly #target: ImportTarget;
  readonly #container: BlobContainer;
  readonly #enableDeletions: boolean;
  readonly #hsmState: BlobChangeApplierOptions["hsmState"];
  readonly #hasHsm: boolean;
  readonly #download: FileDownload | undefined;

  constructor(target: ImportTarget, container: BlobContainer, options: BlobChangeApplierOptions) {
    this.#target = target;
    this.#container = container;
    this.#enableDeletions = options.enableDeletions ?? false;
    this.#hsmState = options.hsmState;
    this.#hasHsm = options.hasHsm;
    this.#download = options.download;
  }

  async apply(change: BlobChange): Promise<AppliedChange> {
    const out: AppliedChange = { counters: emptyAutoImportCounters(), conflicts: [], errors: [] };
    switch (change.kind) {
      case "created":
        await this.#created(change.blob, out);
        break;
      case "deleted":
        await this.#deleted(change.blob, change.recursive === true, out);
        break;
      case "renamed":
        await this.#deleted(change.blob, false, out);
        await this.#created(change.destination ?? "", out);
        break;
      case "directoryCreated":
        await this.#directory(change.blob, out);
        break;
      case "directoryDeleted":
        await this.#deleted(change.blob, true, out);
        break;
      case "directoryRenamed":
        await this.#deleted(change.blob, true, out);
        await this.#importTree(change.destination ?? "", out);
        break;
    }
    return out;
  }

  #rel(name: string, out: AppliedChange): Buffer | undefined {
    try {
      return pathForBlobName(name);
    } catch (err) {
      if (!(err instanceof BlobNameError)) throw err;
      this.#fail(out, {
        path: Buffer.from(name, "utf8"),
        operation: "name",
        code: "UnsafeBlobName",
        message: err.message,
        retryable: false,
      });
      return undefined;
    }
  }

  #fail(out: AppliedChange, error: ItemError): void {
    out.counters.totalErrors++;
    out.errors.push(error);
  }

  #account(out: AppliedChange, o: ImportOutcome, kind: BlobEntryKind): void {
    const c = out.counters;
    if (o.conflict) {
      c.totalConflicts++;
      out.conflicts.push(o.conflict);
    }
    if (o.conflict !== undefined || o.result === "preexisting") {
      if (kind === "file") c.preexistingFiles++;
      else if (kind === "symlink") c.preexistingSymlinks++;
      else c.preexistingDirectories++;
    }
    if (o.error) this.#fail(out, o.error);
    if (o.result === "imported") {
      c.totalBlobsImported++;
      if (kind === "file") c.importedFiles++;
      else if (kind === "symlink") c.importedSymlinks++;
      else c.importedDirectories++;
    }
  }

  async #created(name: string, out: AppliedChange, known?: BlobProperties): Promise<void> {
    const rel = this.#rel(name, out);
    if (!rel) return;
    const props = known ?? (await this.#container.getProperties(name));
    if (!props) {
      out.counters.vanished++;
      return;
    }
    out.counters.totalBlobsWalked++;
    if (isFolderStub(props.metadata)) {
      await this.#stubParents(name, out);
      await this.#directoryWith(rel, props, out);
      return;
    }
    const kind: BlobEntryKind = isSymlinkBlob(props.metadata) ? "symlink" : "file";
    const attrs = toEntryAttributes(
      attributesFromMetadata(props.metadata, kind),
      props.lastModified,
    );
    if (kind === "symlink") {
      await this.#stubParents(name, out);
      const linkTarget = await this.#container.download(name);
      this.#account(out, await this.#target.symlink(rel, linkTarget, attrs, false), kind);
      return;
    }
    // A file's parents are looked at only when its create finds one missing (most exist). A
    // failure there (reading a stub blob) fails the change as it did before the create, rather
    // than being counted as the file's error: the message is abandoned and comes again.
    let parentsFailed: { err: unknown } | undefined;
    const outcome = await this.#target.file(
      rel,
      props.size,
      attrs,
      name,
      props.etag ?? "",
      false,
      async () => {
        try {
          await this.#stubParents(name, out);
        } catch (err) {
          parentsFailed = { err };
          throw err;
        }
      },
    );
    if (parentsFailed !== undefined) throw parentsFailed.err;
    if (outcome.download && this.#download) {
      const error = await this.#download(rel, name, props.size, attrs);
      if (error) {
        outcome.result = "failed";
        outcome.error = error;
      }
    }
    this.#account(out, outcome, kind);
  }

  async #directory(name: string, out: AppliedChange): Promise<void> {
    const rel = this.#rel(name, out);
    if (!rel) return;
    out.counters.totalBlobsWalked++;
    await this.#directoryWith(rel, await this.#container.getProperties(name), out);
  }

  async #directoryWith(
    rel: Buffer,
    props: BlobProperties | undefined,
    out: AppliedChange,
  ): Promise<void> {
    const outcome = await this.#target.directory(rel);
    this.#account(out, outcome, "directory");
    if (outcome.result === "imported") {
      const attrs = attributesFromMetadata(props?.metadata ?? {}, "directory");
      const error = await this.#target.finishDirectory(
        rel,
        toEntryAttributes(attrs, props?.lastModified),
      );
      if (error) this.#fail(out, error);
    }
  }

  /**
   * Missing parent directories that have a directory stub blob are made from it (owner, mode,
   * mtime), as the import walk makes them; the others are made by ensureParents (0755, like an
   * import's implicit directories). Events come in any order, so a file may come before its
   * directory's stub event. For a file this runs only when its create found a parent missing.
   */
  async #stubParents(name: string, out: AppliedChange): Promise<void> {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      const rel = this.#rel(parent, out);
      if (!rel || (await this.#target.root.lstat(rel))) continue;
      const props = await this.#container.getProperties(parent);
      if (props && isFolderStub(props.metadata)) await this.#directoryWith(rel, props, out);
    }
  }

  /** Every blob under `prefix` (a renamed directory's new place), level by level. */
  async #importTree(prefix: string, out: AppliedChange): Promise<void> {
    const levels = [prefix.endsWith("/") ? prefix : `${prefix}/`];
    const dirRel = this.#rel(prefix, out);
    if (dirRel) await this.#directoryWith(dirRel, await this.#container.getProperties(prefix), out);
    for (let level = levels.shift(); level !== undefined; level = levels.shift()) {
      for await (const b of this.#container.listLevel(level)) {
        if (b.kind === "prefix") {
          levels.push(b.name);
          const rel = this.#rel(b.name.slice(0, -1), out);
          if (rel) await this.#directoryWith(rel, undefined, out);
          continue;
        }
        const props: BlobProperties = {
          size: b.size,
          metadata: lowerCaseKeys(b.metadata),
          lastModified: b.lastModified,
        };
        if (b.etag !== undefined) props.etag = b.etag;
        await this.#created(b.name, out, props);
      }
    }
  }

  async #deleted(name: string, recursive: boolean, out: AppliedChange): Promise<void> {
    const rel = this.#rel(name, out);
    if (!rel) return;
    if (!this.#enableDeletions) {
      out.counters.deletionsSkipped++;
      return;
    }
    // A delete older than a re-creation must not remove the new file: the blob is checked again.
    if (!recursive && (await this.#container.getProperties(name))) return;
    try {
      await this.#remove(rel, recursive, out);
    } catch (err) {
      this.#fail(out, {
        path: rel,
        operation: "remove",
        code: (err as { code?: string }).code ?? "EIO",
        message: `autoimport: remove ${this.#target.display(rel)}: ${(err as Error).message}`,
        retryable: false,
      });
    }
  }

  /** Removes `rel`; true when it is gone (a kept dirty file keeps its parents). */
  async #remove(rel: Buffer, recursive: boolean, out: AppliedChange): Promise<boolean> {
    const root = this.#target.root;
    const st = await root.lstat(rel);
    if (!st) return true;
    if (st.isDirectory()) {
      let empty = true;
      for (const child of await this.#children(rel)) {
        if (!recursive) {
          empty = false;
          break;
        }
        empty =
          (await this.#remove(Buffer.concat([rel, Buffer.from("/"), child]), true, out)) && empty;
      }
      if (!empty) return false;
      await root.jobRoot.unlink(rel, true);
      out.counters.deletions++;
      return true;
    }
    if (st.isFile()) {
      const hsm = await this.#hsmState(rel, st);
      if (this.#hasHsm ? !isClean(hsm) : hsm !== undefined && !isClean(hsm)) {
        out.counters.deletionsSkipped++;
        return false;
      }
    }
    await root.unlink(rel);
    out.counters.deletions++;
    return true;
  }

  /** Names in directory `rel`, read through an fd opened beneath the root (nothing followed). */
  async #children(rel: Buffer): Promise<Buffer[]> {
    const { fd } = await this.#target.root.jobRoot.openBeneath(
      rel,
      constants.O_RDONLY | O_DIRECTORY,
    );
    try {
      return await readdir(`/proc/self/fd/${fd}`, { encoding: "buffer" });
    } finally {
      closeSync(fd);
    }
  }
}

const lowerCaseKeys = (m: Record<string, string>): Record<string, string> =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k.toLowerCase(), v]));
