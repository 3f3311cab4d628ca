/**
 * Restore on the emulation backend: the worker brings a released file's data back itself. The
 * blob is the one recorded on the file at import (`<ns>.hsmfleet.archive`), or, without that, the
 * file's path relative to the job's --fs-root in the job's container. The data is written in place
 * (the stub already has the right size), the file's mtime/atime are put back as they were (a
 * restore does not change a file's times), then the HSM state becomes "exists archived" (0x9).
 */
import { constants } from "node:fs";
import {
  FsOperationError,
  HsmFlag,
  blobNameForPath,
  displayPath,
  resolveUnderRoot,
  testSeam,
} from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import type { JsMsg } from "@hsmfleet/bus";
import { HsmEmulation, jobRootFor } from "@hsmfleet/fs";
import { emptyRestoreCounters } from "@hsmfleet/protocol";
import type { ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import type { JobRoot } from "@hsmfleet/fs";
import {
  archiveLocationXattr,
  finishImportedFile,
  keptTimesBeforeRestore,
  locateArchiveCopy,
  recordRestoredBy,
  restoredBy,
} from "../runtime/archive-location.js";
import type { ArchiveCopy } from "../runtime/archive-location.js";
import { countBytes, traceFileTransfer } from "@hsmfleet/telemetry";
import { itemErrorOf } from "../runtime/publisher.js";
import { restoreSmallFile } from "./restore-small.js";
import type { SmallRestoreOutcome } from "./restore-small.js";
import { smallFileJobsEnabled } from "../runtime/small-file-switch.js";
import { finishBatch, forEachLimit, loadBlob } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

/**
 * The blob of a file that records no archive location: its path relative to the job's --fs-root
 * in the job's container (`abs` for the --fs-root test and messages); an error without those.
 */
const fallbackCopy = (
  job: JobStatus,
  abs: Buffer,
  hsmXattr: string,
): { container: string; blobName: string } => {
  const fsRoot = job.spec.import.fsRoot;
  const rootWithSlash = Buffer.concat([fsRoot, Buffer.from("/")]);
  if (
    fsRoot.length === 0 ||
    !job.spec.container ||
    !abs.subarray(0, rootWithSlash.length).equals(rootWithSlash)
  ) {
    throw new FsOperationError(
      "locate",
      displayPath(abs),
      "ENOARCHIVE",
      `no archive location recorded (${archiveLocationXattr(hsmXattr)}) and the file is not under --fs-root with --container; cannot tell which blob holds its data`,
    );
  }
  return {
    container: job.spec.container,
    blobName: blobNameForPath(abs.subarray(rootWithSlash.length), job.spec.prefix),
  };
};

/**
 * Where the data of `rel` (beneath `root`; `abs` for the --fs-root test and messages) is: the
 * recorded archive location, else --fs-root + --container.
 */
const locate = (
  job: JobStatus,
  root: JobRoot,
  rel: Buffer,
  abs: Buffer,
  hsmXattr: string,
): Promise<ArchiveCopy> =>
  locateArchiveCopy(root, rel, hsmXattr, () => fallbackCopy(job, abs, hsmXattr));

export const handleRestoreBatch = async (
  ctx: TransferContext,
  msg: JsMsg,
  batch: TransferBatch,
  job: JobStatus,
  containerFor: (name: string) => Promise<BlobContainer>,
  signal: AbortSignal,
): Promise<void> => {
  const counters = emptyRestoreCounters();
  ctx.track?.({ restore: counters });
  const errors: ItemError[] = [];
  const hsm = new HsmEmulation({ xattr: job.spec.hsmXattr || undefined });
  const archiveId = job.spec.import.archiveId;
  const blob = await loadBlob();
  const { downloadBlobToFile } = blob;
  const smallJobs = smallFileJobsEnabled();
  const onBytes = countBytes("restore", batch.jobId, (n) => ctx.onBytes(n));
  await forEachLimit(batch.entries, ctx.options.fileConcurrency, async (entry) => {
    if (signal.aborted) throw signal.reason;
    const abs = resolveUnderRoot(job.spec.root, entry.path);
    const rel = entry.path;
    const info = {
      direction: "restore" as const,
      jobId: batch.jobId,
      path: entry.path,
      type: "file",
      size: entry.size,
      item: msg,
    };
    await traceFileTransfer(info, async () => {
      let operation = "hsm_state";
      let bytes = 0;
      try {
        const root = await jobRootFor(job.spec.root);
        // One range: two native jobs (restore-small.ts); else, or when it says so, step by step.
        const small: SmallRestoreOutcome = !smallJobs
          ? { result: "general" }
          : await restoreSmallFile({
              root,
              rel,
              abs,
              size: entry.size,
              hsm,
              jobId: batch.jobId,
              archiveId,
              fallback: () => fallbackCopy(job, abs, hsm.xattr),
              containerFor,
              blob,
              options: { budget: ctx.budget, abortSignal: signal, onProgress: onBytes },
              step: (op) => (operation = op),
            });
        if (small.result === "not-released") {
          if (msg.info.deliveryCount > 1 && small.byThisJob) {
            counters.filesRestored++;
            counters.bytesRestored += entry.size;
          }
          return { bytes };
        }
        if (small.result === "restored") {
          counters.bytesRestored += small.bytes;
          bytes = small.bytes;
          testSeam("restore-file-done", abs);
          counters.filesRestored++;
          return { bytes };
        }
        operation = "hsm_state";
        const state = await hsm.state(root, rel);
        if (((state?.flags ?? 0) & HsmFlag.Released) === 0) {
          // Restored meanwhile: nothing to do. Delivered again after its worker died, the files
          // that worker restored for this job are still this item's to count.
          if (msg.info.deliveryCount > 1 && (await restoredBy(root, rel, hsm.xattr, batch.jobId))) {
            counters.filesRestored++;
            counters.bytesRestored += entry.size;
          }
          return { bytes };
        }
        operation = "locate";
        const where = await locate(job, root, rel, abs, hsm.xattr);
        const container = await containerFor(where.container);
        operation = "lstat";
        // Beneath the target's fd too (issue 14): no path walk that a swapped parent could redirect.
        const before = await root.lstat(rel);
        if (before === undefined)
          throw new FsOperationError("lstat", displayPath(abs), "ENOENT", "the file is gone");
        operation = "open";
        // Beneath the target's fd, nothing followed, and only the inode just checked (issue 14).
        const { handle: fh, stat: opened } = await root.openFile(
          rel,
          constants.O_RDWR | constants.O_NONBLOCK,
        );
        if (opened.ino !== before.ino || opened.dev !== before.dev) {
          await fh.close();
          throw new FsOperationError(
            "open",
            displayPath(abs),
            "ESTALE",
            "the file was replaced while being restored; refused",
          );
        }
        try {
          // The times the released file kept, read through the fd just checked and recorded
          // before the first byte is written (a redelivered item must not read the "now" a
          // killed worker's partial write left as the mtime).
          operation = "fstat";
          const times = await keptTimesBeforeRestore(root, rel, hsm.xattr, batch.jobId, () =>
            fh.stat(),
          );
          operation = "download";
          const done = await downloadBlobToFile(container, where.blobName, fh, abs, {
            budget: ctx.budget,
            concurrency: ctx.options.blockConcurrency,
            expectedSize: entry.size,
            abortSignal: signal,
            onProgress: onBytes,
          });
          counters.bytesRestored += done.bytes;
          bytes = done.bytes;
          testSeam("restore-data-written", abs);
          // A file an import left pending gets the blob's final attributes; any other keeps its
          // own, only its times put back (a restore does not change them).
          const finished = await finishImportedFile(
            fh,
            root,
            rel,
            hsm.xattr,
            { container, blobName: where.blobName },
            times,
            (op) => (operation = op),
          );
          if (!finished) {
            operation = "futimes";
            await fh.utimes(times.atime, times.mtimeMs / 1e3);
          }
        } finally {
          await fh.close();
        }
        operation = "setxattr";
        await recordRestoredBy(root, rel, hsm.xattr, batch.jobId);
        operation = "hsm_state";
        await hsm.markArchived(
          root,
          rel,
          Number(state?.archiveId ?? BigInt(archiveId)) || archiveId,
        );
        testSeam("restore-file-done", abs);
        counters.filesRestored++;
        return { bytes };
      } catch (err) {
        if (signal.aborted) throw err;
        counters.errors++;
        const error = itemErrorOf(entry.path, err, operation);
        errors.push(error);
        return { bytes, error };
      }
    });
  });
  await finishBatch(ctx, msg, batch, errors, { restore: counters });
};
