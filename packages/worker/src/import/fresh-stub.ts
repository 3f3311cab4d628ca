/**
 * A file an import (or autoimport) has just made — created O_EXCL, empty, owner-only, nothing
 * recorded on it — finished as a released stub on the emulation backend in two native
 * threadpool jobs (fs smallFileJob: each opens the file beneath the root's fd, nothing followed,
 * checks it is a regular file, and works through that descriptor) instead of eight calls (two
 * set-xattr jobs, an open, a truncate and a close, then three more jobs for the HSM state, the
 * attributes and the record). Under a burst of events the event loop's side of each call was the
 * largest piece of a worker's main thread (issue 20).
 *
 * The steps keep the order a crash must find them in (own-entry.ts reads what is left):
 *   1. the archive reference and the import record "pending <etag>" (in that order);
 *   2. the stub's size (seam `stub-before-hsm-xattr` after it, as TargetHsm.importReleased) —
 *      1 and 2 in one job, the xattrs set before the cut (smallFileJob `xattrsFirst`), so a kill
 *      in it leaves what a kill between them left: a recorded file of size 0;
 *   3. namespace mode: owner, mode and mtime, then the HSM state "released", then the record
 *      "done" — a kill between the attributes and the state leaves a pending file of the blob's
 *      size without state, which a re-run finishes as it finishes one killed at step 2
 *      (ImportTarget #resumeFile); full mode: the HSM state only (the download does the rest).
 */
import { testSeam } from "@hsmfleet/core";
import { smallFileJob } from "@hsmfleet/fs";
import type { EntryAttributes, JobRoot } from "@hsmfleet/fs";

export interface FreshStub {
  /** [archive reference xattr, its value]. */
  location: [string, Buffer];
  /** The import record xattr and the blob's ETag ("pending"/"done" <etag>). */
  importXattr: string;
  etag: string;
  size: number;
  /** [HSM state xattr, the released stub's state] (TargetHsm.releasedStubXattr). */
  hsm: [string, Buffer];
  /** Namespace mode: the final attributes (the file is done after step 3). Full mode: none. */
  attrs?: EntryAttributes | undefined;
}

export const finishFreshStub = async (jr: JobRoot, rel: Buffer, s: FreshStub): Promise<void> => {
  const record = (state: string): [string, Buffer] => [
    s.importXattr,
    Buffer.from(`${state} ${s.etag}`, "utf8"),
  ];
  // Steps 1 and 2 in one job: the xattrs go before the cut (xattrsFirst), in that order.
  await smallFileJob(
    jr,
    rel,
    { xattrs: [s.location, record("pending")], xattrsFirst: true, size: s.size },
    "truncate",
  );
  testSeam("stub-before-hsm-xattr", jr.absolute(rel));
  await smallFileJob(
    jr,
    rel,
    s.attrs ? { attrs: s.attrs, xattrs: [s.hsm, record("done")] } : { xattrs: [s.hsm] },
    "setxattr",
  );
};
