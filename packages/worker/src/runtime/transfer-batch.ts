import {
  EntryType,
  blobNameForPath,
  errorCode,
  errorMessage,
  parseModtime,
  metadataForEntry,
  normalizePrefix,
  resolveUnderRoot,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { setTimeout as sleep } from "node:timers/promises";
import { jobRootFor } from "@hsmfleet/fs";
import type { BlobContainer } from "@hsmfleet/blob";
import type * as BlobApi from "@hsmfleet/blob";
import type { MemoryBudget } from "@hsmfleet/blob/targets";
import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { emptyExportCounters, encodeItemResult, newItemResult, subjects } from "@hsmfleet/protocol";
import type { ItemError, ItemResult, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import { annotateSpan, countBytes, traceFileTransfer } from "@hsmfleet/telemetry";
import { withAttempts } from "./attempts.js";
import type { ItemCounters } from "./item-progress.js";
import type { ResolvedWorkerOptions } from "../options.js";

export interface TransferContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  budget: MemoryBudget;
  /** The consumer's max_deliver: the last attempt of an item. */
  maxDeliver: number;
  onBytes(n: number): void;
  /** Takes the item's live counters once, so its progress can be shown before it ends. */
  track?: ((counters: ItemCounters) => void) | undefined;
  /** An entry failed with a retryable error and is tried again (stats, logs). */
  onRetry?: ((attempt: number, error: ItemError) => void) | undefined;
}

type BlobModule = typeof BlobApi;
let blobModule: Promise<BlobModule> | undefined;
/** @hsmfleet/blob, imported once (an import() per file costs ~8 µs of resolution each time). */
export const loadBlob = (): Promise<BlobModule> => (blobModule ??= import("@hsmfleet/blob"));

/**
 * Runs `fn` over `items` with at most `limit` at once. When one call throws, no new item starts
 * and the error is thrown once the calls in flight have ended (so whatever they finished is
 * counted before the caller reports, e.g. a cancelled batch).
 */
export const forEachLimit = async <T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> => {
  let next = 0;
  let failed = false;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (!failed && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  });
  const settled = await Promise.allSettled(lanes);
  const rejected = settled.find((r) => r.status === "rejected");
  if (rejected) throw rejected.reason;
};

/**
 * Uploads the entries of one TransferBatch in AMLFS format: directories as zero-length stubs with
 * hdi_isfolder=true, symlinks as their target with ftype=LNK, files byte-exact (Put Blob or
 * blocks, with MD5). A file that fails is recorded with its path, operation and cause; the batch
 * goes on. Redelivery re-uploads the same bytes under the same names, and its result is dropped
 * as a duplicate.
 */
export const handleTransferBatch = async (
  ctx: TransferContext,
  msg: JsMsg,
  batch: TransferBatch,
  job: JobStatus,
  /** Undefined only for the benchmarks' null target (BenchSeams.nullTarget). */
  container: BlobContainer | undefined,
  signal: AbortSignal,
): Promise<void> => {
  const spec = job.spec;
  const prefix = normalizePrefix(spec.prefix);
  const exp = emptyExportCounters();
  ctx.track?.({ export: exp });
  const errors: ItemError[] = [];
  const fileCtx = { ...ctx, onBytes: countBytes("export", batch.jobId, (n) => ctx.onBytes(n)) };
  await forEachLimit(batch.entries, ctx.options.fileConcurrency, async (entry) => {
    if (signal.aborted) throw signal.reason;
    const result = await exportOrLanded(container, prefix, entry, signal, (target) =>
      traceFileTransfer(
        {
          direction: "export",
          jobId: batch.jobId,
          path: entry.path,
          type: entryTypeName(entry),
          size: entry.size,
          item: msg,
        },
        () =>
          withAttempts(
            ctx.options.attempts,
            signal,
            () =>
              target === undefined
                ? discardEntry(entry, ctx.options.nullTargetFileMs)
                : exportEntry(fileCtx, target, spec.root, prefix, spec.blockSize, entry, signal),
            (n, error) => ctx.onRetry?.(n, error),
          ),
      ),
    );
    if (result.error) {
      exp.errors++;
      errors.push(result.error);
      return;
    }
    if (entry.type === EntryType.Directory) exp.directoriesExported++;
    else if (entry.type === EntryType.Symlink) exp.symlinksExported++;
    else {
      exp.filesExported++;
      exp.bytesExported += result.bytes;
    }
  });
  annotateSpan(msg, {
    "hsmfleet.files": exp.filesExported,
    "hsmfleet.bytes": exp.bytesExported,
    "hsmfleet.errors": exp.errors,
  });
  await finishBatch(ctx, msg, batch, errors, { export: exp });
};

/**
 * Runs one entry's export; when it is stopped (a cancel, a worker abort) while a file's upload was
 * in flight, asks whether the upload landed all the same (the service may have committed it just
 * before the abort reached the client): then it counts as exported, as a re-run would find it.
 */
const exportOrLanded = async (
  container: BlobContainer | undefined,
  prefix: string,
  entry: FileEntry,
  signal: AbortSignal,
  run: (
    container: BlobContainer | undefined,
  ) => Promise<{ bytes: number; error?: ItemError | undefined }>,
): Promise<{ bytes: number; error?: ItemError | undefined }> => {
  try {
    return await run(container);
  } catch (err) {
    if (!signal.aborted || entry.type !== EntryType.File || container === undefined) throw err;
    const landed = await container
      .getProperties(blobNameForPath(entry.path, prefix))
      .then(
        (p) =>
          p !== undefined &&
          p.size === entry.size &&
          parseModtime(p.metadata["modtime"] ?? "") === entry.mtimeSec,
      )
      .catch(() => false);
    if (landed) return { bytes: entry.size };
    throw err;
  }
};

/** Reports a transfer-like batch's result (its id + ".r", so a redelivery's is dropped) and acks. */
export const finishBatch = async (
  ctx: Pick<TransferContext, "js" | "options">,
  msg: JsMsg,
  batch: TransferBatch,
  errors: ItemError[],
  counters: Partial<Pick<ItemResult, "export" | "import" | "restore">>,
): Promise<void> => {
  await ctx.js.publish(
    subjects.itemResult(batch.jobId),
    encodeItemResult(
      newItemResult({
        jobId: batch.jobId,
        itemId: batch.batchId,
        kind: "transfer",
        errors,
        workerId: ctx.options.workerId,
        attempt: msg.info.deliveryCount,
        ...counters,
      }),
    ),
    { msgID: `${batch.batchId}.r` },
  );
  msg.ack();
};

const entryTypeName = (entry: FileEntry): string =>
  entry.type === EntryType.Directory
    ? "directory"
    : entry.type === EntryType.Symlink
      ? "symlink"
      : "file";

/** Benchmarks' null target (BenchSeams.nullTarget): the entry counts as moved, nothing is read. */
const discardEntry = (
  entry: FileEntry,
  delayMs: number,
): Promise<{ bytes: number; error?: ItemError }> => {
  const result = { bytes: entry.type === EntryType.File ? entry.size : 0 };
  return delayMs > 0 ? sleep(delayMs).then(() => result) : Promise.resolve(result);
};

/** One entry uploaded in AMLFS format (the export path; sync reuses it). */
export const exportEntry = async (
  ctx: TransferContext,
  container: BlobContainer,
  root: Buffer,
  prefix: string,
  blockSize: number,
  entry: FileEntry,
  signal: AbortSignal,
): Promise<{ bytes: number; error?: ItemError }> => {
  const fail = (operation: string, err: unknown): { bytes: number; error: ItemError } => ({
    bytes: 0,
    error: {
      path: entry.path,
      operation,
      code: errorCode(err),
      message: errorMessage(err),
      retryable: err instanceof Error && "retryable" in err ? Boolean(err.retryable) : false,
    },
  });
  let name: string;
  try {
    name = blobNameForPath(entry.path, prefix);
  } catch (err) {
    return fail("name", err);
  }
  const local = resolveUnderRoot(root, entry.path);
  const metadata = metadataForEntry(entry);
  switch (entry.type) {
    case EntryType.Directory:
      try {
        await container.putBlob(name, Buffer.alloc(0), { metadata, abortSignal: signal });
        return { bytes: 0 };
      } catch (err) {
        return fail("put-blob", err);
      }
    case EntryType.Symlink: {
      let target: Buffer;
      try {
        target = await (await jobRootFor(root)).readlink(entry.path);
      } catch (err) {
        return fail("readlink", err);
      }
      try {
        await container.putBlob(name, target, { metadata, abortSignal: signal });
        return { bytes: 0 };
      } catch (err) {
        return fail("put-blob", err);
      }
    }
    default:
      try {
        // Loaded on first use: scans never load the Azure SDK.
        const { uploadFile } = await loadBlob();
        // Opened beneath the job root's fd, no symlink followed on any component, and it must be
        // the inode the walk listed (issue 14): a swapped directory cannot redirect the read.
        const rootFd = (await jobRootFor(root)).fd;
        const done = await uploadFile(container, local, name, {
          beneath: { rootFd, rel: entry.path },
          metadata,
          blockSizeBytes: blockSize || undefined,
          concurrency: ctx.options.blockConcurrency,
          budget: ctx.budget,
          abortSignal: signal,
          onProgress: (n) => ctx.onBytes(n),
          expected: {
            size: entry.size,
            mtimeSec: entry.mtimeSec,
            mtimeNsec: entry.mtimeNsec,
            ino: entry.ino,
          },
        });
        return { bytes: done.bytes };
      } catch (err) {
        if (signal.aborted) throw err;
        return fail(
          err instanceof Error && "operation" in err ? String(err.operation) : "upload",
          err,
        );
      }
  }
};
