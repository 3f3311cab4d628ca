/**
 * Restore of a released file that fits in one GET, on the emulation backend, in two native
 * threadpool jobs instead of ~14 (issue 17):
 *
 *   1. inspectFile beneath the target's fd (nothing followed): fstat and the HSM state, archive
 *      location, import record and restored-by xattrs, in one job.
 *   2. after the one GET, smallFileJob: the same inode opened again (ESTALE when it was replaced
 *      meanwhile), the data's MD5 checked against the blob's Content-MD5 (a mismatch writes
 *      nothing), the mtime to keep recorded (`pending <jobId> <mtime ms>` in the restored-by
 *      xattr, as formatPendingRestore: what a redelivered item puts back after a crash), the
 *      data written (zero blocks left as holes) and cut to it, the atime and mtime put back
 *      as the open found them (a restore does not change them), restored-by recorded and the HSM
 *      state made "exists archived" (the policy flags kept), in that order, closed.
 *
 * Anything else — not released, a file an import left pending (it needs the blob's attributes),
 * a blob of another size or larger than one range — is the caller's (restore-batch.ts) general
 * path, which does the same step by step.
 */
import {
  FsOperationError,
  HSM_COMPAT,
  HsmFlag,
  decodeHsmAttrs,
  errorMessage,
} from "@hsmfleet/core";
import type { HsmAttrs } from "@hsmfleet/core";
import type { BlobContainer, DownloadRangeOptions } from "@hsmfleet/blob";
import type * as BlobApi from "@hsmfleet/blob";
import { ARCHIVED_FLAGS, inspectFile, smallFileJob } from "@hsmfleet/fs";
import type { HsmEmulation, JobRoot } from "@hsmfleet/fs";
import {
  archiveLocationXattr,
  importStateXattr,
  parseArchiveLocation,
  parseImportState,
  pendingRestoreMtime,
  restoredByXattr,
} from "../runtime/archive-location.js";

export interface SmallRestore {
  root: JobRoot;
  rel: Buffer;
  abs: Buffer;
  /** The size the batch entry gives. */
  size: number;
  hsm: HsmEmulation;
  jobId: string;
  /** The job's archive id, for a state without one. */
  archiveId: number;
  /** The blob when the file records none (--fs-root + --container); throws when there is none. */
  fallback: () => { container: string; blobName: string };
  containerFor: (name: string) => Promise<BlobContainer>;
  blob: Pick<typeof BlobApi, "downloadSmallBlobTo">;
  /** Budget, abort signal and progress of the download. */
  options: DownloadRangeOptions;
  /** Told each step, for the item error's operation. */
  step: (operation: string) => void;
}

export type SmallRestoreOutcome =
  /** Restored here: `bytes` written. */
  | { result: "restored"; bytes: number }
  /** Not released (restored meanwhile); `byThisJob` when this job's record is on it. */
  | { result: "not-released"; byThisJob: boolean }
  /** Take the general path. */
  | { result: "general" };

const decodeState = (value: Buffer | undefined, r: SmallRestore): HsmAttrs | undefined => {
  if (value === undefined) return undefined;
  try {
    return decodeHsmAttrs(value);
  } catch (err) {
    throw new FsOperationError("getxattr", r.root.display(r.rel), "EINVAL", errorMessage(err), err);
  }
};

export const restoreSmallFile = async (r: SmallRestore): Promise<SmallRestoreOutcome> => {
  const { hsm } = r;
  const restoredName = restoredByXattr(hsm.xattr);
  r.step("hsm_state");
  const seen = await inspectFile(
    r.root,
    r.rel,
    [hsm.xattr, archiveLocationXattr(hsm.xattr), importStateXattr(hsm.xattr), restoredName],
    "hsm_state",
  );
  const [stateValue, location, importRecord, restored] = seen.xattrs;
  const state = decodeState(stateValue, r);
  if (((state?.flags ?? 0) & HsmFlag.Released) === 0) {
    const byThisJob = restored?.equals(Buffer.from(r.jobId, "utf8")) ?? false;
    return { result: "not-released", byThisJob };
  }
  // A file an import left pending gets the blob's attributes: the general path does that. So does
  // a file this job began before (its worker died): its data may have moved the mtime, and the
  // general path puts back the one recorded before the first write.
  if (parseImportState(importRecord)?.state === "pending") return { result: "general" };
  if (pendingRestoreMtime(restored, r.jobId) !== undefined) return { result: "general" };
  r.step("locate");
  const where = (location && parseArchiveLocation(location)) ?? r.fallback();
  const container = await r.containerFor(where.container);
  r.step("download");
  const archiveId = Number(state?.archiveId ?? BigInt(r.archiveId)) || r.archiveId;
  const done = await r.blob.downloadSmallBlobTo(
    container,
    where.blobName,
    r.abs,
    r.size,
    async (data, expectMd5) => {
      const w = await smallFileJob(r.root, r.rel, {
        data,
        sparse: true,
        ...(expectMd5 !== undefined ? { expectMd5 } : {}),
        sameInode: { dev: seen.stat.dev, ino: seen.stat.ino },
        keepTimes: true,
        // The mtime to keep, recorded by the same job before the first byte is written (a
        // crash between the write and its futimens must not leave "now" to a redelivered
        // item): `pending <jobId> <mtime ms>`, as formatPendingRestore writes it.
        pendingRestore: { xattr: restoredName, jobId: r.jobId },
        xattrs: [[restoredName, Buffer.from(r.jobId, "utf8")]],
        hsmState: {
          xattr: hsm.xattr,
          setFlags: ARCHIVED_FLAGS,
          keepFlags: HsmFlag.NoRelease | HsmFlag.NoArchive,
          archiveId,
          compat: HSM_COMPAT,
        },
      });
      return w.md5Mismatch
        ? { md5Mismatch: true, actual: w.md5, notWritten: true }
        : { md5Mismatch: false, actual: w.md5 };
    },
    r.options,
  );
  return done ? { result: "restored", bytes: done.bytes } : { result: "general" };
};
