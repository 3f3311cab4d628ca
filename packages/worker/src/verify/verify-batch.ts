import { createHash } from "node:crypto";
import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { jobRootFor } from "@hsmfleet/fs";
import {
  blobNameForPath,
  displayPath,
  errorCode,
  errorMessage,
  normalizePrefix,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import { emptyExportCounters } from "@hsmfleet/protocol";
import type { ExportCounters, ItemError, JobStatus, TransferBatch } from "@hsmfleet/protocol";
import type { ResolvedWorkerOptions } from "../options.js";
import { finishBatch } from "../runtime/transfer-batch.js";
import { VERIFY_OPERATION, VerifyDifference } from "./verify-visitor.js";

export interface VerifyBatchContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  onBytes(n: number): void;
}

const READ_BYTES = 4 * 1024 * 1024;

const md5OfFile = async (fh: FileHandle, signal: AbortSignal): Promise<Buffer> => {
  const hash = createHash("md5");
  const buf = Buffer.allocUnsafe(READ_BYTES);
  for (let pos = 0; ;) {
    if (signal.aborted) throw signal.reason as Error;
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) break;
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
  return hash.digest();
};

/** Compares the blob's bytes with the file's as the download streams; true when equal. */
const sameBytes = async (
  fh: FileHandle,
  container: BlobContainer,
  name: string,
  signal: AbortSignal,
): Promise<boolean> => {
  const res = await container.client.getBlobClient(name).download(0, undefined, {
    abortSignal: signal,
  });
  const body = res.readableStreamBody;
  if (body === undefined) return false;
  let pos = 0;
  const local = Buffer.allocUnsafe(READ_BYTES);
  for await (const chunk of body as AsyncIterable<Buffer>) {
    for (let off = 0; off < chunk.length;) {
      const want = Math.min(chunk.length - off, local.length);
      const { bytesRead } = await fh.read(local, 0, want, pos);
      if (
        bytesRead === 0 ||
        !local.subarray(0, bytesRead).equals(chunk.subarray(off, off + bytesRead))
      )
        return false;
      off += bytesRead;
      pos += bytesRead;
    }
  }
  const { bytesRead } = await fh.read(local, 0, 1, pos);
  return bytesRead === 0;
};

/**
 * The data half of a verify job: for each file of the batch, the MD5 of the local data against
 * the blob's Content-MD5 (which hsmfleet and azcopy store), or — for a blob without one — a
 * byte-by-byte comparison with a download. Each difference or failure is one error line; the
 * result counts files and bytes checked (filesExported/bytesExported) and identical files
 * (skipped).
 */
export const handleVerifyBatch = async (
  ctx: VerifyBatchContext,
  msg: JsMsg,
  batch: TransferBatch,
  job: JobStatus,
  container: BlobContainer,
  signal: AbortSignal,
): Promise<void> => {
  const prefix = normalizePrefix(job.spec.prefix);
  const counters: ExportCounters = emptyExportCounters();
  const errors: ItemError[] = [];
  const differ = (
    entry: FileEntry,
    code: string,
    message: string,
    operation = VERIFY_OPERATION,
  ) => {
    counters.errors++;
    errors.push({
      path: entry.path,
      operation,
      code,
      message: `${displayPath(entry.path)}: ${message}`,
      retryable: false,
    });
  };
  for (const entry of batch.entries) {
    if (signal.aborted) throw signal.reason as Error;
    const name = blobNameForPath(entry.path, prefix);
    let fh: FileHandle;
    try {
      // Beneath the job root's fd, no symlink followed on any component (issue 14).
      fh = (await (await jobRootFor(job.spec.root)).openFile(entry.path, constants.O_RDONLY))
        .handle;
    } catch (err) {
      differ(entry, errorCode(err), `open: ${errorMessage(err)}`, "open");
      continue;
    }
    try {
      const props = await container.getProperties(name);
      if (props === undefined) {
        differ(entry, VerifyDifference.MissingBlob, `no blob "${name}"`);
        continue;
      }
      let same: boolean;
      if (props.contentMD5 !== undefined) {
        const md5 = await md5OfFile(fh, signal);
        same = md5.equals(props.contentMD5);
        if (!same) {
          differ(
            entry,
            VerifyDifference.Content,
            `MD5 ${md5.toString("hex")} of the file, ${props.contentMD5.toString("hex")} in the blob's Content-MD5`,
          );
        }
      } else {
        same = await sameBytes(fh, container, name, signal);
        if (!same) differ(entry, VerifyDifference.Content, `data differs from blob "${name}"`);
      }
      counters.filesExported++;
      counters.bytesExported += entry.size;
      ctx.onBytes(entry.size);
      if (same) counters.skipped++;
    } catch (err) {
      if (signal.aborted) throw err;
      differ(entry, errorCode(err), errorMessage(err), "verify-content");
    } finally {
      await fh.close();
    }
  }
  await finishBatch(ctx, msg, batch, errors, { export: counters });
};
