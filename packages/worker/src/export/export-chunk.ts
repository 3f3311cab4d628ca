/**
 * Export of large files in chunks: a file larger than the job's chunk size becomes one Chunk work
 * item per range of whole blocks, which any worker takes from the shared `chunk` consumer. Each
 * item stages its blocks (Put Block with each block's Content-MD5; ids from blocks.ts's
 * blockIdFor(offset), so every worker names the same block the same way). The chunk tracker (KV,
 * compare-and-set) records the chunks staged; a completion that finds them all staged commits the
 * block list with the file's metadata, after checking that the file's size and mtime are still
 * what the walk saw. A redelivered chunk stages the same bytes under the same ids and, finding the
 * file complete, commits the same list again: harmless. The file is counted once, by the item the
 * tracker names (`counts`).
 */
import {
  EntryType,
  errorCode,
  errorMessage,
  metadataForEntry,
  resolveUnderRoot,
  testSeam,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import { chooseBlockSize } from "@hsmfleet/blob/targets";
import { ChunkTracker } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import { emptyExportCounters } from "@hsmfleet/protocol";
import type { Chunk, ItemError, JobStatus } from "@hsmfleet/protocol";
import { jobRootFor } from "@hsmfleet/fs";
import { annotateSpan } from "@hsmfleet/telemetry";
import { chunkLabel, publishChunkResult } from "../runtime/chunk-result.js";
import { chunkSpanAttributes, startChunkStep } from "../runtime/chunk-spans.js";
import { loadBlob } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";
import { blobNameFor } from "../item-checks.js";

/** Export files larger than this are chunked unless the job says otherwise. */
export { DEFAULT_CHUNK_SIZE_BYTES as DEFAULT_EXPORT_CHUNK_SIZE } from "@hsmfleet/protocol";

/**
 * The chunk items of one file: ranges of whole blocks (the block size is chooseBlockSize's for the
 * file, as uploadFile would pick it), each about `chunkSize` bytes (rounded down to whole blocks,
 * at least one block). Ids are `<fileId>.<index>`, deterministic for a redelivered walk shard.
 */
export const exportChunksFor = (
  jobId: string,
  fileId: string,
  entry: FileEntry,
  blobName: string,
  chunkSize: number,
  preferredBlockSize: number | undefined,
): Chunk[] => {
  const blockSize = chooseBlockSize(entry.size, preferredBlockSize || undefined);
  const blocksPerChunk = Math.max(1, Math.floor(chunkSize / blockSize));
  const totalBlocks = Math.ceil(entry.size / blockSize);
  const count = Math.ceil(totalBlocks / blocksPerChunk);
  const chunks: Chunk[] = [];
  for (let index = 0; index < count; index++) {
    const firstBlock = index * blocksPerChunk;
    const blockCount = Math.min(blocksPerChunk, totalBlocks - firstBlock);
    const offset = firstBlock * blockSize;
    chunks.push({
      jobId,
      chunkId: `${fileId}.${index}`,
      path: entry.path,
      offset,
      length: Math.min(blockCount * blockSize, entry.size - offset),
      firstBlock,
      blockCount,
      blockSize,
      fileSize: entry.size,
      fileMtimeSec: entry.mtimeSec,
      fileMtimeNsec: entry.mtimeNsec,
      index,
      count,
      blobName,
      etag: "",
      contentMd5: Buffer.alloc(0),
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
    });
  }
  return chunks;
};

const isRetryable = (err: unknown): boolean =>
  err instanceof Error && "retryable" in err ? Boolean(err.retryable) : false;

export const handleExportChunk = async (
  ctx: TransferContext,
  msg: JsMsg,
  chunk: Chunk,
  job: JobStatus,
  container: BlobContainer,
  tracker: ChunkTracker,
  signal: AbortSignal,
): Promise<void> => {
  const exp = emptyExportCounters();
  const errors: ItemError[] = [];
  const local = resolveUnderRoot(job.spec.root, chunk.path);
  // Derived from the path here, never taken from the message (item-checks.ts).
  const blobName = blobNameFor(job, chunk.path);
  const expected = {
    size: chunk.fileSize,
    mtimeSec: chunk.fileMtimeSec,
    mtimeNsec: chunk.fileMtimeNsec,
  };
  let operation = "stage-block";
  annotateSpan(msg, chunkSpanAttributes(chunk));
  // Read beneath the job root's fd: no symlink on the chunk's path is followed (issue 14).
  let beneath: { rootFd: number; rel: Buffer } | undefined;
  // The range's upload under the chunk's item span; the commit by the finalizing chunk gets its own.
  let step = startChunkStep(msg, "export chunk", chunk, chunk.length);
  try {
    const { stageFileRange, commitStagedFile } = await loadBlob();
    operation = "open";
    beneath = { rootFd: (await jobRootFor(job.spec.root)).fd, rel: chunk.path };
    operation = "stage-block";
    await stageFileRange(container, local, blobName, {
      beneath,
      offset: chunk.offset,
      length: chunk.length,
      blockSize: chunk.blockSize,
      expected,
      concurrency: ctx.options.blockConcurrency,
      budget: ctx.budget,
      abortSignal: signal,
      onProgress: (n) => ctx.onBytes(n),
    });
    step.end("ok", { bytes: chunk.length });
    // Bytes count chunk by chunk (so progress does not wait for a whole large file); the file
    // counts once, when its last chunk is in.
    exp.bytesExported += chunk.length;
    operation = "chunk-complete";
    testSeam("chunk-before-complete", chunk.path);
    const { allDone, counts } = await tracker.complete(
      ChunkTracker.key(chunk.jobId, chunk.path),
      chunk.index,
      chunk.count,
      chunk.chunkId,
    );
    if (allDone) {
      operation = "commit-block-list";
      step = startChunkStep(msg, "export commit", chunk, chunk.fileSize);
      await commitStagedFile(container, local, blobName, {
        beneath,
        fileSize: chunk.fileSize,
        blockSize: chunk.blockSize,
        expected,
        metadata: metadataForEntry({
          type: EntryType.File,
          mode: chunk.mode,
          uid: chunk.uid,
          gid: chunk.gid,
          mtimeSec: chunk.fileMtimeSec,
        }),
        abortSignal: signal,
      });
      step.end("ok");
    }
    annotateSpan(msg, { "hsmfleet.chunk.committed": allDone, "hsmfleet.bytes": chunk.length });
    if (counts) exp.filesExported++;
  } catch (err) {
    step.end("error", { err });
    if (signal.aborted) throw err;
    // A file that changed stays changed: reported now, not retried. Network, 5xx and a busy KV
    // get another delivery while there are some.
    const changed = err instanceof Error && err.name === "FileChangedError";
    const retryable = !changed && isRetryable(err);
    if (retryable && msg.info.deliveryCount < ctx.maxDeliver) throw err;
    exp.errors++;
    annotateSpan(msg, { "hsmfleet.errors": 1 });
    errors.push({
      path: chunk.path,
      operation: err instanceof Error && "operation" in err ? String(err.operation) : operation,
      code: errorCode(err),
      message: `${chunkLabel(chunk)}: ${errorMessage(err)}`,
      retryable,
    });
  }
  await publishChunkResult(ctx, msg, chunk, { errors, export: exp });
};
