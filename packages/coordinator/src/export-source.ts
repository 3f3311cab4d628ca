import { lstat, realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { EntryType, UsageError } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { statEntry } from "@hsmfleet/fs";
import { encodeTransferBatch, subjects } from "@hsmfleet/protocol";
import { checkScanRoot } from "./scan-job.js";

/**
 * What an export copies: a directory tree, or one regular file (as `azcopy copy FILE URL` does:
 * one blob named by the file's base name, under --prefix). A single file's job has the file's
 * directory as its root (workers open entries relative to it) and the file as its only entry; its
 * root lock is the file's path, so exports of other files or of the directory are not refused.
 */
export interface ExportSource {
  /** The job's root: the tree, or the directory holding the file (real path). */
  root: string;
  /** The file's name in `root` when one file is exported. */
  file?: string | undefined;
  /** The key of the one-job-per-root lock. */
  lockPath: string;
}

export const checkExportSource = async (path: string): Promise<ExportSource> => {
  const abs = resolve(path);
  const st = await lstat(abs).catch(() => undefined);
  if (st?.isFile()) {
    const root = await realpath(dirname(abs));
    const file = basename(abs);
    return { root, file, lockPath: join(root, file) };
  }
  const root = await checkScanRoot(path, "export source");
  return { root, lockPath: root };
};

/**
 * The one work item of a single-file export: a TransferBatch with the file's entry, stat'ed now
 * (the transfer refuses a file that changes after this, as after a walk).
 */
export const singleFileBatch = async (
  jobId: string,
  source: ExportSource & { file: string },
): Promise<{ subject: string; data: Uint8Array; msgId: string; entry: FileEntry }> => {
  const e = await statEntry(Buffer.from(join(source.root, source.file)));
  if (e.type !== EntryType.File)
    throw new UsageError(
      `export source ${join(source.root, source.file)} is no longer a regular file`,
    );
  const entry: FileEntry = {
    path: Buffer.from(source.file),
    type: e.type,
    size: e.size,
    mtimeSec: e.mtimeSec,
    mtimeNsec: e.mtimeNsec,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    ino: e.ino,
    nlink: e.nlink,
  };
  const batchId = `${jobId}.file`;
  return {
    subject: subjects.transfer(jobId),
    data: encodeTransferBatch({ jobId, batchId, shardId: batchId, sequence: 0, entries: [entry] }),
    msgId: batchId,
    entry,
  };
};
