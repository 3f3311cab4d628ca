/**
 * Where a file's archive copy is, and what an import recorded on the files it made. One answer for
 * every HSM action (restore, remove, archive of a re-dirtied file) and for `hsmfleet restore`:
 *
 *  - `<ns>.hsmfleet.archive` = `container/blob`, written by import on each file it makes (`<ns>`
 *    is the namespace of --hsm-xattr: `trusted`, or `user` for `user.hsm`). A file that has it
 *    keeps its archive copy there, whatever container the action's job names.
 *  - without it, the copy is where `hsm archive` puts it: the job's container at the path's blob
 *    name (under the job's prefix).
 *  - `<ns>.hsmfleet.import` = `pending <etag>` from the moment the import makes the file until its
 *    final attributes (and, in full mode, its data) are in, then `done <etag>`: how a re-run of the
 *    same import (or a redelivered item) tells its own leftovers from other files, and how a restore
 *    knows the final attributes still have to come from the blob.
 *
 * Every read and write goes through the job root's fd with the path relative to it (JobRoot: no
 * symlink followed), never by absolute path.
 */
import type { FileHandle } from "node:fs/promises";
import type { BlobContainer } from "@hsmfleet/blob";
import { attributesFromMetadata } from "@hsmfleet/core";
import type { JobRoot } from "@hsmfleet/fs";

const namespaceOf = (hsmXattr: string): string => hsmXattr.split(".")[0] || "trusted";

/** Where a file's data lives in Blob, recorded on each imported file for `hsmfleet restore`. */
export const archiveLocationXattr = (hsmXattr: string): string =>
  `${namespaceOf(hsmXattr)}.hsmfleet.archive`;

/**
 * `<ns>.hsmfleet.restored` = the id of the restore job that brought the file's data back: a restore
 * item or walk shard delivered again after its worker died tells the files its own job restored
 * (counted, so the job's counters stay exact) from files restored by anything else.
 */
export const restoredByXattr = (hsmXattr: string): string =>
  `${namespaceOf(hsmXattr)}.hsmfleet.restored`;

/** Whether restore job `jobId` restored `rel` beneath `root` (its record says so). */
export const restoredBy = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
  jobId: string,
): Promise<boolean> =>
  (await root.getXattr(rel, restoredByXattr(hsmXattr)))?.equals(Buffer.from(jobId, "utf8")) ??
  false;

/**
 * The mtime a released file had before restore job `jobId` began writing its data, recorded in the
 * restored-by xattr as `pending <jobId> <mtimeMs>` before the first byte is written. Writing the
 * data moves the file's mtime to "now"; a worker killed between the data and the futimes would
 * otherwise leave the redelivered item reading that "now" as the time to keep. (The atime is not
 * moved by a write: it is always the file's own.) Read back only for the same job;
 * `recordRestoredBy` replaces it when the file is done. The small-file restore has the same record
 * written by its native job (fs smallFileJob `pendingRestore`, restore-small.ts): same format.
 */
export const formatPendingRestore = (jobId: string, mtimeMs: number): Buffer =>
  Buffer.from(`pending ${jobId} ${mtimeMs}`, "utf8");

/** The mtime (ms) a `pending <jobId> <mtimeMs>` record of job `jobId` kept, else undefined. */
export const pendingRestoreMtime = (
  value: Buffer | undefined,
  jobId: string,
): number | undefined => {
  const m = value ? /^pending (\S+) (-?\d+(?:\.\d+)?)$/.exec(value.toString("utf8")) : null;
  return m && m[1] === jobId ? Number(m[2]) : undefined;
};

/** The times to put back after restore job `jobId` writes `rel`'s data (see formatPendingRestore). */
export const keptTimesBeforeRestore = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
  jobId: string,
  current: () => Promise<{ atimeMs: number; mtimeMs: number }>,
): Promise<{ atime: Date; mtimeMs: number }> => {
  const now = await current();
  const kept = pendingRestoreMtime(await root.getXattr(rel, restoredByXattr(hsmXattr)), jobId);
  if (kept !== undefined) return { atime: new Date(now.atimeMs), mtimeMs: kept };
  await root.setXattr(rel, restoredByXattr(hsmXattr), formatPendingRestore(jobId, now.mtimeMs));
  return { atime: new Date(now.atimeMs), mtimeMs: now.mtimeMs };
};

/** Records that restore job `jobId` restored `rel` beneath `root`. */
export const recordRestoredBy = (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
  jobId: string,
): Promise<void> => root.setXattr(rel, restoredByXattr(hsmXattr), Buffer.from(jobId, "utf8"));

export const importStateXattr = (hsmXattr: string): string =>
  `${namespaceOf(hsmXattr)}.hsmfleet.import`;

export interface ArchiveCopy {
  container: string;
  blobName: string;
  /** True when the file recorded it (import), false when derived from the job. */
  recorded: boolean;
}

export const formatArchiveLocation = (container: string, blobName: string): Buffer =>
  Buffer.from(`${container}/${blobName}`, "utf8");

export const parseArchiveLocation = (
  value: Buffer,
): { container: string; blobName: string } | undefined => {
  const text = value.toString("utf8");
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1) return undefined;
  return { container: text.slice(0, slash), blobName: text.slice(slash + 1) };
};

/**
 * The archive copy of `rel` beneath `root`: the recorded location, else `fallback()` (which may
 * throw when the job cannot tell, naming the path and why).
 */
export const locateArchiveCopy = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
  fallback: () => { container: string; blobName: string },
): Promise<ArchiveCopy> => {
  const recorded = await root.getXattr(rel, archiveLocationXattr(hsmXattr));
  const parsed = recorded ? parseArchiveLocation(recorded) : undefined;
  if (parsed) return { ...parsed, recorded: true };
  return { ...fallback(), recorded: false };
};

export interface ImportState {
  state: "pending" | "done";
  /** The ETag of the blob the file was made from ("" when the listing gave none). */
  etag: string;
}

export const formatImportState = (s: ImportState): Buffer =>
  Buffer.from(`${s.state} ${s.etag}`, "utf8");

export const parseImportState = (value: Buffer | undefined): ImportState | undefined => {
  if (!value) return undefined;
  const m = /^(pending|done) (.*)$/s.exec(value.toString("utf8"));
  return m ? { state: m[1] as ImportState["state"], etag: m[2]! } : undefined;
};

export const readImportState = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
): Promise<ImportState | undefined> =>
  parseImportState(await root.getXattr(rel, importStateXattr(hsmXattr)));

/** Marks an imported file finished (`done <etag>`); a file without the record is left alone. */
export const finishImportState = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
): Promise<void> => {
  const s = await readImportState(root, rel, hsmXattr);
  if (s && s.state !== "done") {
    await root.setXattr(
      rel,
      importStateXattr(hsmXattr),
      formatImportState({ ...s, state: "done" }),
    );
  }
};

/**
 * After a restore brought the data of `rel` (beneath `root`) back through `fh`: a file an import
 * left `pending` (Ctrl-C, a crash, a failed download) still has its owner-only placeholder
 * attributes, so it gets the blob's final owner, mode and mtime — as the import would have set
 * them, through the open file — and its record becomes `done`. Returns false, doing nothing, for
 * any other file (which keeps its own attributes). `op` is told each step, for error messages.
 */
export const finishImportedFile = async (
  fh: FileHandle,
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
  copy: { container: BlobContainer; blobName: string },
  times: { atime: Date; mtimeMs: number },
  op: (operation: string) => void = () => undefined,
): Promise<boolean> => {
  op("getxattr");
  if ((await readImportState(root, rel, hsmXattr))?.state !== "pending") return false;
  op("get-properties");
  const props = await copy.container.getProperties(copy.blobName);
  const a = attributesFromMetadata(props?.metadata ?? {}, "file");
  const mtimeSec =
    a.mtimeSec ?? Math.floor((props?.lastModified?.getTime() ?? times.mtimeMs) / 1000);
  op("fchown");
  await fh.chown(a.uid, a.gid);
  op("fchmod");
  await fh.chmod(a.mode & 0o7777);
  op("futimes");
  await fh.utimes(times.atime, mtimeSec);
  op("setxattr");
  await finishImportState(root, rel, hsmXattr);
  return true;
};
