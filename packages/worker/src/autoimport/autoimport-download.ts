/**
 * `hsmfleet autoimport --mode full`: the data of a BlobCreated file, through the import job's
 * download path (import-download.ts): ranged reads written in place beneath the target root with a
 * bounded memory budget, the size checked, then the final attributes, the import record "done" and
 * HSM state "exists archived" (0x9). A download that fails leaves nothing that looks complete
 * (ImportTarget.abandonDownload) and is an error of its change, as in an import job.
 */
import type { BlobContainer } from "@hsmfleet/blob";
import type { MemoryBudget } from "@hsmfleet/blob/targets";
import { errorMessage } from "@hsmfleet/core";
import type { EntryAttributes } from "@hsmfleet/fs";
import type { ItemError } from "@hsmfleet/protocol";
import type { ImportTarget } from "../import/import-target.js";
import { itemErrorOf } from "../runtime/publisher.js";
import { loadBlob } from "../runtime/transfer-batch.js";
import type { FileDownload } from "./apply-blob-change.js";

export interface AutoImportDownloadOptions {
  target: ImportTarget;
  container: BlobContainer;
  budget: MemoryBudget;
  /** Ranged reads of one file at once (the worker's blockConcurrency). */
  concurrency: number;
  signal: AbortSignal;
  /** Bytes written (the worker's stats). */
  onBytes?: (n: number) => void;
}

export const autoImportDownload =
  (o: AutoImportDownloadOptions): FileDownload =>
  async (rel: Buffer, blobName: string, size: number, attrs: EntryAttributes) => {
    const { downloadBlobToFile } = await loadBlob();
    let operation = "open";
    try {
      if (await o.target.downloadComplete(rel, size)) return undefined;
      const fh = await o.target.root.openExisting(rel);
      try {
        operation = "download";
        await downloadBlobToFile(o.container, blobName, fh, o.target.root.absolute(rel), {
          budget: o.budget,
          concurrency: o.concurrency,
          expectedSize: size,
          abortSignal: o.signal,
          ...(o.onBytes ? { onProgress: o.onBytes } : {}),
        });
      } finally {
        await fh.close();
      }
      operation = "setattr";
      await o.target.completeDownload(rel, attrs);
      return undefined;
    } catch (err) {
      if (o.signal.aborted) throw err;
      const left = operation === "open" ? undefined : await o.target.abandonDownload(rel, size);
      const error: ItemError = itemErrorOf(
        rel,
        err,
        operation,
        left === undefined
          ? undefined
          : `${errorMessage(err)}; partial data not cleaned up: ${left}`,
      );
      return error;
    }
  };
