/**
 * --mode full: downloads the data of files the import walk created as stubs. Each file is written
 * in place at offsets (ranged GETs with bounded concurrency, If-Match on one ETag, MD5 checked when
 * the blob has one), then gets its final attributes and the HSM state "exists archived" (0x9).
 * A file that fails is recorded with its path, operation and cause and is left looking incomplete
 * (ImportTarget.abandonDownload: a released stub without the partial data, or no plain file at
 * all); a redelivered batch downloads again into the same files.
 */
import type { BlobContainer } from "@hsmfleet/blob";
import { errorMessage, testSeam } from "@hsmfleet/core";
import type { JsMsg } from "@hsmfleet/bus";
import { emptyImportCounters } from "@hsmfleet/protocol";
import type { ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import { countBytes, traceFileTransfer } from "@hsmfleet/telemetry";
import { blobNameFor } from "../item-checks.js";
import type { ImportTarget } from "./import-target.js";
import { writeSmallDownload } from "./small-write.js";
import { smallFileJobsEnabled } from "../runtime/small-file-switch.js";
import { itemErrorOf } from "../runtime/publisher.js";
import { finishBatch, forEachLimit, loadBlob } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

export const handleImportDownload = async (
  ctx: TransferContext,
  msg: JsMsg,
  batch: TransferBatch,
  job: JobStatus,
  container: BlobContainer,
  target: ImportTarget,
  signal: AbortSignal,
): Promise<void> => {
  const counters = emptyImportCounters();
  ctx.track?.({ import: counters });
  const errors: ItemError[] = [];
  const { downloadBlobToFile, downloadSmallBlobTo } = await loadBlob();
  const smallJobs = smallFileJobsEnabled();
  const onBytes = countBytes("import", batch.jobId, (n) => ctx.onBytes(n));
  await forEachLimit(
    // Blob names derived from the paths here, never taken from the message (item-checks.ts).
    batch.entries.map((entry) => ({ entry, name: blobNameFor(job, entry.path) })),
    ctx.options.fileConcurrency,
    async ({ entry, name }) => {
      if (signal.aborted) throw signal.reason;
      const info = {
        direction: "import" as const,
        jobId: batch.jobId,
        path: entry.path,
        type: "file",
        size: entry.size,
        item: msg,
      };
      await traceFileTransfer(info, async () => {
        let operation = "open";
        let bytes = 0;
        const local = target.root.absolute(entry.path);
        testSeam("import-download-start", local);
        try {
          // Delivered again (its worker died): files it completed before are not fetched twice.
          if (
            msg.info.deliveryCount > 1 &&
            (await target.downloadComplete(entry.path, entry.size))
          ) {
            counters.importedFiles++;
            counters.totalBlobsImported++;
            return { bytes };
          }
          const attrs = {
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtimeSec: entry.mtimeSec,
          };
          // A blob of one range: one GET, then one native job (MD5 check, write, attributes,
          // import record, HSM state). Undefined when the blob's size is not the listed one.
          operation = "download";
          const small = !smallJobs
            ? undefined
            : await downloadSmallBlobTo(
                container,
                name,
                local,
                entry.size,
                (data, md5) => writeSmallDownload(target, entry.path, data, md5, attrs),
                {
                  budget: ctx.budget,
                  abortSignal: signal,
                  onProgress: (n) => {
                    counters.bytesDownloaded += n;
                    onBytes(n);
                  },
                },
              );
          if (small) {
            counters.bytesImported += small.bytes;
            counters.importedFiles++;
            counters.totalBlobsImported++;
            return { bytes: small.bytes };
          }
          operation = "open";
          const fh = await target.root.openExisting(entry.path);
          try {
            operation = "download";
            const done = await downloadBlobToFile(container, name, fh, local, {
              budget: ctx.budget,
              concurrency: ctx.options.blockConcurrency,
              expectedSize: entry.size,
              abortSignal: signal,
              onProgress: (n) => {
                counters.bytesDownloaded += n;
                onBytes(n);
              },
            });
            counters.bytesImported += done.bytes;
            bytes = done.bytes;
          } finally {
            await fh.close();
          }
          operation = "setattr";
          await target.completeDownload(entry.path, attrs);
          counters.importedFiles++;
          counters.totalBlobsImported++;
          return { bytes };
        } catch (err) {
          if (signal.aborted) throw err;
          // The small path's one job failed at its open: nothing of ours was touched.
          if (err instanceof Error && "operation" in err && err.operation === "open") {
            operation = "open";
          }
          counters.totalErrors++;
          // Nothing half-written may look complete: the stub loses its partial data (or the
          // plain file goes), and the error says so when even that failed. A file that could
          // not even be opened holds nothing of ours (and may not be ours any more).
          const left =
            operation === "open" ? undefined : await target.abandonDownload(entry.path, entry.size);
          const error = itemErrorOf(
            entry.path,
            err,
            operation,
            left === undefined
              ? undefined
              : `${errorMessage(err)}; partial data not cleaned up: ${left}`,
          );
          errors.push(error);
          return { bytes, error };
        }
      });
    },
  );
  await finishBatch(ctx, msg, batch, errors, { import: counters });
};
