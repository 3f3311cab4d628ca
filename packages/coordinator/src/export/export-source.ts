import { lstat, realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { EntryType, UsageError } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient } from "@hsmfleet/bus";
import { JobRoot, isRegular } from "@hsmfleet/fs";
import type { BeneathStat } from "@hsmfleet/fs";
import { encodeTransferBatch, subjects } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { checkScanRoot } from "../scan/scan-job.js";

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
 * The one work item of a single-file export: a TransferBatch with the file's entry, lstat'ed now
 * beneath the job root's fd (the base name as the relative path, no symlink followed; the transfer
 * refuses a file that changes after this, as after a walk). Its batch id is the job's only
 * outstanding work item.
 */
export const singleFileBatch = async (
  jobId: string,
  source: ExportSource & { file: string },
): Promise<{ batchId: string; data: Uint8Array; entry: FileEntry }> => {
  const rel = Buffer.from(source.file);
  const jobRoot = await JobRoot.open(source.root);
  let st: BeneathStat | undefined;
  try {
    st = await jobRoot.lstat(rel);
  } finally {
    jobRoot.close();
  }
  if (st === undefined || !isRegular(st))
    throw new UsageError(
      `export source ${join(source.root, source.file)} is no longer a regular file`,
    );
  const entry: FileEntry = {
    path: rel,
    type: EntryType.File,
    size: st.size,
    mtimeSec: st.mtimeSec,
    mtimeNsec: st.mtimeNsec,
    mode: st.mode,
    uid: st.uid,
    gid: st.gid,
    ino: st.ino,
    nlink: st.nlink,
  };
  const batchId = singleFileBatchId(jobId);
  return {
    batchId,
    data: encodeTransferBatch({ jobId, batchId, shardId: batchId, sequence: 0, entries: [entry] }),
    entry,
  };
};

/** The work item id of a single-file export's transfer batch. */
export const singleFileBatchId = (jobId: string): string => `${jobId}.file`;

/** Publishes the single-file batch, sealed with the job's key (workers refuse unsealed items). */
export const publishSingleFileBatch = async (
  js: JetStreamClient,
  status: JobStatus,
  item: { batchId: string; data: Uint8Array },
  headers?: Parameters<typeof sealHeaders>[3],
): Promise<void> => {
  const subject = subjects.transfer(status.spec.jobId);
  await js.publish(subject, item.data, {
    msgID: item.batchId,
    headers: sealHeaders(status.spec.itemKey, subject, item.data, headers),
  });
};
