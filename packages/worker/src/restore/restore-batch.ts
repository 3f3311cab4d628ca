/**
 * Restore on the emulation backend: the worker brings a released file's data back itself. The
 * blob is the one recorded on the file at import (`<ns>.hsmfleet.archive`), or, without that, the
 * file's path relative to the job's --fs-root in the job's container. The data is written in place
 * (the stub already has the right size), the file's mtime/atime are put back as they were (a
 * restore does not change a file's times), then the HSM state becomes "exists archived" (0x9).
 */
import { constants } from "node:fs";
import { lstat } from "node:fs/promises";
import {
  FsOperationError,
  HsmFlag,
  blobNameForPath,
  displayPath,
  resolveUnderRoot,
} from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import type { JsMsg } from "@hsmfleet/bus";
import { HsmEmulation, getXattr, jobRootFor } from "@hsmfleet/fs";
import { emptyRestoreCounters } from "@hsmfleet/protocol";
import type { ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import { archiveLocationXattr, parseArchiveLocation } from "../runtime/archive-location.js";
import { countBytes, traceFileTransfer } from "@hsmfleet/telemetry";
import { itemErrorOf } from "../runtime/publisher.js";
import { finishBatch, forEachLimit, loadBlob } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

/** Where the data of `abs` is: the recorded archive location, else --fs-root + --container. */
const locate = async (
  job: JobStatus,
  abs: Buffer,
  locationXattr: string,
): Promise<{ container: string; blobName: string }> => {
  const recorded = await getXattr(abs, locationXattr);
  const parsed = recorded ? parseArchiveLocation(recorded) : undefined;
  if (parsed) return parsed;
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
      `no archive location recorded (${locationXattr}) and the file is not under --fs-root with --container; cannot tell which blob holds its data`,
    );
  }
  return {
    container: job.spec.container,
    blobName: blobNameForPath(abs.subarray(rootWithSlash.length), job.spec.prefix),
  };
};

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
  const locationXattr = archiveLocationXattr(hsm.xattr);
  const archiveId = job.spec.import.archiveId;
  const { downloadBlobToFile } = await loadBlob();
  const onBytes = countBytes("restore", batch.jobId, (n) => ctx.onBytes(n));
  await forEachLimit(batch.entries, ctx.options.fileConcurrency, async (entry) => {
    if (signal.aborted) throw signal.reason;
    const abs = resolveUnderRoot(job.spec.root, entry.path);
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
        const state = await hsm.state(abs);
        // Restored meanwhile (a redelivered item): nothing to do.
        if (((state?.flags ?? 0) & HsmFlag.Released) === 0) return { bytes };
        operation = "locate";
        const where = await locate(job, abs, locationXattr);
        const container = await containerFor(where.container);
        operation = "lstat";
        const before = await lstat(abs);
        operation = "open";
        // Beneath the target's fd, nothing followed, and only the inode just checked (issue 14).
        const { handle: fh, stat: opened } = await (
          await jobRootFor(job.spec.root)
        ).openFile(entry.path, constants.O_RDWR | constants.O_NONBLOCK);
        if (opened.ino !== BigInt(before.ino) || opened.dev !== BigInt(before.dev)) {
          await fh.close();
          throw new FsOperationError(
            "open",
            displayPath(abs),
            "ESTALE",
            "the file was replaced while being restored; refused",
          );
        }
        try {
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
        } finally {
          await fh.close();
        }
        operation = "lutimes";
        {
          // Times back through a fresh fd beneath the root (the download's fd is closed).
          const { handle } = await (
            await jobRootFor(job.spec.root)
          ).openFile(entry.path, constants.O_RDONLY | constants.O_NONBLOCK);
          try {
            await handle.utimes(before.atime, before.mtime);
          } finally {
            await handle.close();
          }
        }
        operation = "hsm_state";
        await hsm.markArchived(abs, Number(state?.archiveId ?? BigInt(archiveId)) || archiveId);
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
