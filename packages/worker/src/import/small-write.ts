/**
 * The last step of a small file's full-mode download in ONE native threadpool job (fs
 * smallFileJob, issue 17): beneath the target's fd, nothing followed, the file the walk made is
 * opened, the downloaded bytes' MD5 checked against the blob's Content-MD5 (a mismatch writes
 * nothing), the data written (zero blocks left as holes) and the file cut to it, then — as
 * ImportTarget.completeDownload does, in its order — owner, mode, mtime = atime, the import record
 * "done" and the HSM state "exists archived" (emulation backend), and the file closed.
 *
 * On Lustre, whose HSM state `lfs hsm_set` sets by path, the job writes the data only and
 * completeDownload follows as before.
 */
import { importStateXattr } from "../runtime/archive-location.js";
import { smallFileJob } from "@hsmfleet/fs";
import type { EntryAttributes, SmallFileJob } from "@hsmfleet/fs";
import type { SmallBlobWritten } from "@hsmfleet/blob";
import type { ImportTarget } from "./import-target.js";

export const writeSmallDownload = async (
  target: ImportTarget,
  rel: Buffer,
  data: Buffer,
  expectMd5: Uint8Array | undefined,
  attrs: EntryAttributes,
): Promise<SmallBlobWritten> => {
  const hsmState = target.beneath?.archivedState();
  const lustre = target.beneath !== undefined && hsmState === undefined;
  const job: SmallFileJob = {
    data,
    sparse: true,
    ...(expectMd5 !== undefined ? { expectMd5 } : {}),
  };
  if (!lustre) {
    job.attrs = attrs;
    if (hsmState) {
      job.importDone = importStateXattr(target.options.hsmXattr);
      job.hsmState = hsmState;
    }
  }
  const r = await smallFileJob(target.root.jobRoot, rel, job);
  if (r.md5Mismatch) return { md5Mismatch: true, actual: r.md5, notWritten: true };
  if (lustre) await target.completeDownload(rel, attrs);
  return { md5Mismatch: false, actual: r.md5 };
};
