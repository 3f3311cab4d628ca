/**
 * --mode full, large blobs: one chunk (a byte range) of one file, downloaded by whichever worker
 * takes it, written at its offset into the stub. The chunk tracker (KV, compare-and-set) records
 * the chunks done; a completion that finds them all done finalizes the file: the whole-file MD5
 * against the blob's Content-MD5, the final attributes and the HSM state "exists archived". Every
 * step of the finalization is idempotent, so a redelivered chunk may repeat it harmlessly; the
 * file is counted by the one chunk item that completed it.
 */
import { errorMessage } from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import { ChunkTracker } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { emptyImportCounters } from "@hsmfleet/protocol";
import type { Chunk, ItemError, JobStatus } from "@hsmfleet/protocol";
import { annotateSpan } from "@hsmfleet/telemetry";
import { chunkLabel, publishChunkResult } from "../runtime/chunk-result.js";
import { chunkSpanAttributes, startChunkStep } from "../runtime/chunk-spans.js";
import { blobNameFor } from "../item-checks.js";
import type { ImportTarget } from "./import-target.js";
import { itemErrorOf } from "../runtime/publisher.js";
import { loadBlob } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

export const handleImportChunk = async (
  ctx: TransferContext,
  msg: JsMsg,
  chunk: Chunk,
  job: JobStatus,
  container: BlobContainer,
  target: ImportTarget,
  tracker: ChunkTracker,
  signal: AbortSignal,
): Promise<void> => {
  const counters = emptyImportCounters();
  const errors: ItemError[] = [];
  const { downloadRangeChecked, verifyFileMd5 } = await loadBlob();
  const abs = target.root.absolute(chunk.path);
  // Derived from the path here, never taken from the message (item-checks.ts).
  const blobName = blobNameFor(job, chunk.path);
  let operation = "open";
  annotateSpan(msg, chunkSpanAttributes(chunk));
  // The range's download under the chunk's item span; the finalizing chunk's MD5 check and
  // attributes get their own ("import finalize").
  let step = startChunkStep(msg, "import chunk", chunk, chunk.length);
  try {
    const fh = await target.root.openExisting(chunk.path);
    let allDone = false;
    let counts = false;
    let allVerified = false;
    try {
      operation = "download";
      const got = await downloadRangeChecked(
        container,
        blobName,
        fh,
        abs,
        chunk.offset,
        chunk.length,
        {
          ...(chunk.etag ? { etag: chunk.etag } : {}),
          budget: ctx.budget,
          concurrency: ctx.options.blockConcurrency,
          abortSignal: signal,
          onProgress: (n) => {
            counters.bytesDownloaded += n;
            ctx.onBytes(n);
          },
        },
      );
      step.end("ok", { bytes: chunk.length });
      operation = "chunk-complete";
      // A chunk whose every range matched the service's CRC64 is recorded as checked: when all
      // are, the file needs no whole-file MD5 pass at the end.
      ({ allDone, counts, allVerified } = await tracker.complete(
        ChunkTracker.key(chunk.jobId, chunk.path),
        chunk.index,
        chunk.count,
        chunk.chunkId,
        got.crc64Verified,
      ));
      if (allDone) step = startChunkStep(msg, "import finalize", chunk, chunk.fileSize);
      if (allDone && chunk.contentMd5.length > 0 && !allVerified) {
        operation = "verify-md5";
        await verifyFileMd5(container, blobName, fh, abs, chunk.fileSize, chunk.contentMd5, {
          budget: ctx.budget,
          abortSignal: signal,
        });
      }
    } finally {
      await fh.close();
    }
    if (allDone) {
      operation = "setattr";
      await target.completeDownload(chunk.path, {
        mode: chunk.mode,
        uid: chunk.uid,
        gid: chunk.gid,
        mtimeSec: chunk.fileMtimeSec,
      });
      step.end("ok");
    }
    annotateSpan(msg, { "hsmfleet.chunk.committed": allDone, "hsmfleet.bytes": chunk.length });
    if (counts) {
      counters.importedFiles++;
      counters.totalBlobsImported++;
      counters.bytesImported += chunk.fileSize;
    }
  } catch (err) {
    step.end("error", { err });
    if (signal.aborted) throw err;
    // A retryable failure (network, 5xx, a busy KV) gets another delivery while there are some.
    const retryable = err instanceof Error && "retryable" in err ? Boolean(err.retryable) : false;
    if (retryable && msg.info.deliveryCount < ctx.maxDeliver) throw err;
    counters.totalErrors++;
    annotateSpan(msg, { "hsmfleet.errors": 1 });
    // The file can no longer complete: drop what is in it (docs/import.md, "Failed downloads").
    const left =
      operation === "open" ? undefined : await target.abandonDownload(chunk.path, chunk.fileSize);
    errors.push(
      itemErrorOf(
        chunk.path,
        err,
        operation,
        `${chunkLabel(chunk)}: ${errorMessage(err)}${left === undefined ? "" : `; partial data not cleaned up: ${left}`}`,
      ),
    );
  }
  await publishChunkResult(ctx, msg, chunk, { errors, import: counters });
};
