import { constants } from "node:fs";
import {
  DEFAULT_HSM_XATTR,
  FsOperationError,
  EntryType,
  HsmFlag,
  HsmRefusedError,
  blobNameForPath,
  displayPath,
  metadataForEntry,
  normalizePrefix,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { jobRootFor } from "@hsmfleet/fs";
import type { HsmEmulationBackend, JobRoot } from "@hsmfleet/fs";
import { HsmItemStatus, encodeHsmProgress, subjects } from "@hsmfleet/protocol";
import type { HsmActionItem, HsmActionList, HsmItemResult, JobStatus } from "@hsmfleet/protocol";
import {
  finishImportedFile,
  keptTimesBeforeRestore,
  locateArchiveCopy,
  recordRestoredBy,
} from "../runtime/archive-location.js";
import type { ArchiveCopy } from "../runtime/archive-location.js";
import type { HsmActionContext } from "./hsm-context.js";
import { result } from "./hsm-results.js";

/**
 * The emulation backend's copytool data moves: ARCHIVE uploads the file in the export blob format,
 * RESTORE downloads the blob into the released file, both two-phase around the backend's state
 * (beginArchive/completeArchive, beginRestore/completeRestore) and reporting progress.
 */
export class HsmCopy {
  readonly #ctx: HsmActionContext;
  /** Containers this worker made sure exist (archive creates its container on first use). */
  readonly #ensured = new Map<string, Promise<void>>();

  constructor(ctx: HsmActionContext) {
    this.#ctx = ctx;
  }

  /**
   * Where the file's archive copy is (runtime/archive-location.ts, the same answer for every action
   * and for `hsmfleet restore`): the location an import recorded on it (read beneath the job
   * root's fd), else the job's container at the path's blob name (under the job's prefix).
   */
  async archiveCopy(job: JobStatus, item: HsmActionItem): Promise<ArchiveCopy> {
    return locateArchiveCopy(
      await jobRootFor(job.spec.root),
      item.path,
      job.spec.hsmXattr || DEFAULT_HSM_XATTR,
      () => ({
        container: job.spec.container,
        blobName: blobNameForPath(item.path, normalizePrefix(job.spec.prefix)),
      }),
    );
  }

  #progress(list: HsmActionList, item: HsmActionItem, total: number): (n: number) => void {
    let done = 0;
    let last = 0;
    return (n) => {
      done += n;
      this.#ctx.onBytes?.(n);
      const now = Date.now();
      if (now - last < 1000 && done < total) return;
      last = now;
      this.#ctx.nc.publish(
        subjects.hsmProgress(list.jobId),
        encodeHsmProgress({
          jobId: list.jobId,
          listId: list.listId,
          fid: item.fid,
          action: item.action,
          bytesDone: done,
          bytesTotal: total,
          workerId: this.#ctx.workerId,
        }),
      );
    };
  }

  async archive(
    job: JobStatus,
    list: HsmActionList,
    item: HsmActionItem,
    backend: HsmEmulationBackend,
    root: JobRoot,
    signal: AbortSignal,
  ): Promise<HsmItemResult> {
    const abs = root.absolute(item.path);
    const before = await backend.state(root, item.path);
    const flags = before?.flags ?? 0;
    // Already archived and clean (a redelivered list, or asked twice): nothing to copy.
    if ((flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Dirty) === 0) {
      return result(item, HsmItemStatus.Skipped, "already archived");
    }
    const snapshot = await backend.beginArchive(root, item.path);
    // Beneath the job root's fd, nothing followed (issue 14).
    const st = await root.lstat(item.path);
    if (st === undefined)
      throw new FsOperationError("lstat", displayPath(abs), "ENOENT", "the file is gone");
    const entry: FileEntry = {
      path: item.path,
      type: EntryType.File,
      size: snapshot.size,
      mtimeSec: st.mtimeSec,
      mtimeNsec: st.mtimeNsec,
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      ino: st.ino,
      nlink: st.nlink,
    };
    const copy = await this.archiveCopy(job, item);
    const container = await this.#ctx.container(job, copy.container);
    let ensured = this.#ensured.get(container.name);
    if (!ensured) {
      ensured = container.ensureExists();
      ensured.catch(() => this.#ensured.delete(container.name));
      this.#ensured.set(container.name, ensured);
    }
    await ensured;
    const { uploadFile } = await import("@hsmfleet/blob");
    const done = await uploadFile(container, abs, copy.blobName, {
      // Read beneath the job root's fd, nothing followed, and only the inode just checked.
      beneath: { rootFd: root.fd, rel: item.path },
      metadata: metadataForEntry(entry),
      blockSizeBytes: job.spec.blockSize || undefined,
      concurrency: this.#ctx.blockConcurrency,
      budget: this.#ctx.budget,
      abortSignal: signal,
      onProgress: this.#progress(list, item, snapshot.size),
      expected: {
        size: entry.size,
        mtimeSec: entry.mtimeSec,
        mtimeNsec: entry.mtimeNsec,
        ino: st.ino,
        dev: st.dev,
      },
    });
    signal.throwIfAborted();
    await backend.completeArchive(root, item.path, list.archiveId, snapshot);
    return { ...result(item, HsmItemStatus.Done), bytes: done.bytes };
  }

  async restore(
    job: JobStatus,
    list: HsmActionList,
    item: HsmActionItem,
    backend: HsmEmulationBackend,
    root: JobRoot,
    signal: AbortSignal,
  ): Promise<HsmItemResult> {
    const abs = root.absolute(item.path);
    if (!(await backend.beginRestore(root, item.path)))
      return result(item, HsmItemStatus.Skipped, "not released");
    const copy = await this.archiveCopy(job, item);
    const container = await this.#ctx.container(job, copy.container);
    const { downloadBlobToFile } = await import("@hsmfleet/blob");
    // The data goes in through an fd opened beneath the job root (nothing followed), and only
    // into the inode that was checked, itself looked up beneath the root (issue 14).
    const before = await root.lstat(item.path);
    if (before === undefined)
      throw new FsOperationError("lstat", displayPath(abs), "ENOENT", "the file is gone");
    const { handle: fh, stat: opened } = await root.openFile(item.path, constants.O_RDWR);
    if (opened.ino !== before.ino || opened.dev !== before.dev) {
      await fh.close();
      throw new HsmRefusedError(
        "restore",
        displayPath(abs),
        "replaced",
        `restore of ${displayPath(abs)} refused: the file was replaced while being checked`,
      );
    }
    let bytes: number;
    try {
      // The times the released file kept, read through the fd just checked and recorded before
      // the first byte is written (a redelivered item must not take a killed worker's partial
      // write's "now" as the mtime to keep).
      const hsmXattr = job.spec.hsmXattr || DEFAULT_HSM_XATTR;
      const times = await keptTimesBeforeRestore(root, item.path, hsmXattr, list.jobId, () =>
        fh.stat(),
      );
      const done = await downloadBlobToFile(container, copy.blobName, fh, abs, {
        budget: this.#ctx.budget,
        concurrency: this.#ctx.blockConcurrency,
        abortSignal: signal,
        onProgress: this.#progress(list, item, Number(before.size)),
      });
      bytes = done.bytes;
      if (bytes !== before.size) {
        throw new HsmRefusedError(
          "restore",
          displayPath(abs),
          "size mismatch",
          `restore of ${displayPath(abs)} failed: the archive copy has ${bytes} bytes, the file ${before.size}`,
        );
      }
      // The released file kept its mtime; writing the data back must not look like a user write.
      // A stub an import left pending gets the blob's final attributes instead (archive-location.ts).
      const finished = await finishImportedFile(
        fh,
        root,
        item.path,
        hsmXattr,
        { container, blobName: copy.blobName },
        times,
      );
      if (!finished) await fh.utimes(times.atime, times.mtimeMs / 1e3);
    } finally {
      await fh.close();
    }
    await recordRestoredBy(root, item.path, job.spec.hsmXattr || DEFAULT_HSM_XATTR, list.jobId);
    signal.throwIfAborted();
    await backend.completeRestore(root, item.path);
    return { ...result(item, HsmItemStatus.Done), bytes };
  }
}
