/**
 * --mode full: downloads the data of files the import walk created as stubs. Each file is written
 * in place at offsets (ranged GETs with bounded concurrency, If-Match on one ETag, MD5 checked when
 * the blob has one), then gets its final attributes and the HSM state "exists archived" (0x9).
 * A file that fails is recorded with its path, operation and cause and stays a released stub; a
 * redelivered batch downloads again into the same files.
 */
import type { BlobContainer } from "@hsmfleet/blob";
import type { JsMsg } from "@hsmfleet/bus";
import { emptyImportCounters } from "@hsmfleet/protocol";
import type { ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import type { ImportTarget } from "./import-target.js";
import { itemErrorOf } from "./publisher.js";
import { finishBatch, forEachLimit, loadBlob } from "./transfer-batch.js";
import type { TransferContext } from "./transfer-batch.js";

export const handleImportDownload = async (
  ctx: TransferContext,
  msg: JsMsg,
  batch: TransferBatch,
  _job: JobStatus,
  container: BlobContainer,
  target: ImportTarget,
  signal: AbortSignal,
): Promise<void> => {
  const counters = emptyImportCounters();
  const errors: ItemError[] = [];
  const names = batch.blobNames ?? [];
  const { downloadBlobToFile } = await loadBlob();
  const keepAlive = setInterval(() => msg.working(), Math.max(1000, ctx.ackWaitMs / 3));
  try {
    await forEachLimit(
      batch.entries.map((entry, i) => ({ entry, name: names[i] ?? "" })),
      ctx.options.fileConcurrency,
      async ({ entry, name }) => {
        if (signal.aborted) throw signal.reason;
        let operation = "open";
        try {
          const fh = await target.root.openExisting(entry.path);
          try {
            operation = "download";
            const done = await downloadBlobToFile(
              container,
              name,
              fh,
              target.root.absolute(entry.path),
              {
                budget: ctx.budget,
                concurrency: ctx.options.blockConcurrency,
                abortSignal: signal,
                onProgress: (n) => {
                  counters.bytesDownloaded += n;
                  ctx.onBytes(n);
                },
              },
            );
            counters.bytesImported += done.bytes;
          } finally {
            await fh.close();
          }
          operation = "setattr";
          await target.completeDownload(entry.path, {
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtimeSec: entry.mtimeSec,
          });
          counters.importedFiles++;
          counters.totalBlobsImported++;
        } catch (err) {
          if (signal.aborted) throw err;
          counters.totalErrors++;
          errors.push(itemErrorOf(entry.path, err, operation));
        }
      },
    );
  } finally {
    clearInterval(keepAlive);
  }
  await finishBatch(ctx, msg, batch, errors, { import: counters });
};
