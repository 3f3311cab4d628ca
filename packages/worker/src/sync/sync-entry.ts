import { EntryType, displayPath, errorMessage, parseModtime } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { jobRootFor } from "@hsmfleet/fs";
import type { BeneathStat } from "@hsmfleet/fs";
import type { BlobContainer } from "@hsmfleet/blob";
import type { SyncCounters, SyncFailure } from "@hsmfleet/protocol";
import { exportEntry } from "../runtime/transfer-batch.js";
import type { TransferContext } from "../runtime/transfer-batch.js";

/** What applying one sync batch needs: the export path's context, the job's root and container. */
export interface SyncApplyContext {
  transfer: TransferContext;
  container: BlobContainer;
  root: Buffer;
  prefix: string;
  blockSize: number;
  signal: AbortSignal;
  counters: SyncCounters;
  requeue: Buffer[];
  failures: SyncFailure[];
}

const S_IFMT = 0o170000;
const typeOfMode = (mode: number): EntryType => {
  switch (mode & S_IFMT) {
    case 0o100000:
      return EntryType.File;
    case 0o040000:
      return EntryType.Directory;
    case 0o120000:
      return EntryType.Symlink;
    default:
      return EntryType.Other;
  }
};

const toEntry = (path: Buffer, st: BeneathStat): FileEntry => ({
  path,
  type: typeOfMode(st.mode),
  size: st.size,
  mtimeSec: st.mtimeSec,
  mtimeNsec: st.mtimeNsec,
  mode: st.mode,
  uid: st.uid,
  gid: st.gid,
  ino: st.ino,
  nlink: st.nlink,
});

/** The entry at `path` now (lstat beneath the job root, no symlink followed), or undefined. */
export const entryAt = async (root: Buffer, path: Buffer): Promise<FileEntry | undefined> => {
  const st = await (await jobRootFor(root)).lstat(path);
  return st === undefined ? undefined : toEntry(path, st);
};

export const fail = (
  ctx: SyncApplyContext,
  path: Buffer,
  operation: string,
  err: unknown,
): void => {
  ctx.counters.failures++;
  if (ctx.failures.length < 100)
    ctx.failures.push({ path: displayPath(path), operation, message: errorMessage(err) });
};

/** Uploads the entry as export does; a file that changed while it was read is queued again. */
export const upload = async (ctx: SyncApplyContext, entry: FileEntry): Promise<void> => {
  if (entry.type === EntryType.Other) return; // fifos, sockets, devices have no blob form
  const done = await exportEntry(
    ctx.transfer,
    ctx.container,
    ctx.root,
    ctx.prefix,
    ctx.blockSize,
    entry,
    ctx.signal,
  );
  if (done.error) {
    if (done.error.code === "FileChangedError") ctx.requeue.push(entry.path);
    else {
      ctx.counters.failures++;
      if (ctx.failures.length < 100)
        ctx.failures.push({
          path: displayPath(done.error.path),
          operation: done.error.operation,
          message: done.error.message,
        });
    }
    return;
  }
  if (entry.type === EntryType.Directory) ctx.counters.directoriesExported++;
  else if (entry.type === EntryType.Symlink) ctx.counters.symlinksExported++;
  else {
    ctx.counters.filesExported++;
    ctx.counters.bytesExported += done.bytes;
  }
};

/** Whether the blob holds the entry's data as export would have written it (size and modtime). */
export const sameData = (
  entry: FileEntry,
  props: { size: number; metadata: Record<string, string> },
): boolean =>
  entry.type !== EntryType.File ||
  (props.size === entry.size && parseModtime(props.metadata["modtime"] ?? "") === entry.mtimeSec);
