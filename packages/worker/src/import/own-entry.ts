/**
 * How an import tells its own leftovers from other files: the archive reference
 * (`<ns>.hsmfleet.archive`) and the import record (`<ns>.hsmfleet.import`, with the blob's ETag)
 * it writes on each file it makes (runtime/archive-location.ts), read beneath the job root's fd.
 */
import { HsmFlag } from "@hsmfleet/core";
import type { EntryAttributes, JobRoot } from "@hsmfleet/fs";
import type { ImportMode } from "@hsmfleet/protocol";
import {
  archiveLocationXattr,
  formatArchiveLocation,
  importStateXattr,
  parseImportState,
} from "../runtime/archive-location.js";
import { isClean } from "./import-conflict.js";
import type { Existing } from "./import-conflict.js";

/** "created", "incomplete", "complete", or undefined: not this import's. */
export type OwnEntry = "created" | "incomplete" | "complete" | undefined;

/** What ownEntry needs of the import target. */
export interface OwnEntryTarget {
  root: JobRoot;
  /** False on the posix backend (nothing is recorded on the files). */
  hsm: boolean;
  mode: ImportMode;
  container: string;
  hsmXattr: string;
}

/**
 * Whether an existing file is this import's own: "created" (a redelivery finds it empty, 0600,
 * with nothing recorded: the earlier attempt stopped right after creating it), "incomplete" or
 * "complete" (its archive reference and import record name this blob and ETag).
 */
export const ownEntry = async (
  target: OwnEntryTarget,
  rel: Buffer,
  existing: Existing,
  size: number,
  attrs: EntryAttributes,
  blobName: string,
  etag: string,
  redelivered: boolean,
): Promise<OwnEntry> => {
  if (!existing.st.isFile()) return undefined;
  const flags = existing.hsm?.flags ?? 0;
  const empty =
    existing.st.size === 0n && (Number(existing.st.mode) & 0o7777) === 0o600 && flags === 0;
  if (!target.hsm) {
    // posix backend: nothing is recorded on the file; only a redelivery may take it as its own.
    if (!redelivered) return undefined;
    if (empty) return "created";
    return existing.st.size === BigInt(size) && (existing.st.blocks === 0n || size === 0)
      ? "incomplete"
      : undefined;
  }
  const jr = target.root;
  const [location, record] = await Promise.all([
    jr.getXattr(rel, archiveLocationXattr(target.hsmXattr)),
    jr.getXattr(rel, importStateXattr(target.hsmXattr)),
  ]);
  const state = parseImportState(record);
  const ours =
    location !== undefined &&
    location.equals(formatArchiveLocation(target.container, blobName)) &&
    state !== undefined &&
    state.etag === etag;
  if (!ours) {
    // Killed between creating the file (O_EXCL) and recording it — files are made several at once,
    // so a crash can leave a few — an empty placeholder with no record (or only this blob's
    // reference) is ours on a redelivery, or in a directory this import made and has not finished
    // (owner-only until then, so nobody else could have put it there).
    const unrecorded =
      empty &&
      state === undefined &&
      (location === undefined ||
        location.equals(formatArchiveLocation(target.container, blobName)));
    if (!unrecorded) return undefined;
    return redelivered || (await inPendingDirectory(jr, rel, target.hsmXattr))
      ? "created"
      : undefined;
  }
  if ((flags & HsmFlag.Dirty) !== 0) return undefined;
  // Killed before the stub's size was set (flags 0 then: no HSM state yet).
  if (existing.st.size !== BigInt(size) && !(existing.st.size === 0n && flags === 0))
    return undefined;
  if (state.state === "pending") return "incomplete";
  // Finished once; written to since (a new mtime) is no longer the blob's copy.
  if (existing.st.mtimeSec !== Math.floor(attrs.mtimeSec)) return undefined;
  if (target.mode === "full") {
    const archived = (flags & HsmFlag.Archived) !== 0 && (flags & HsmFlag.Released) === 0;
    return archived ? "complete" : "incomplete";
  }
  return isClean(existing.hsm) ? "complete" : "incomplete";
};

/** Whether the directory holding `rel` was made by an import that has not finished it yet. */
const inPendingDirectory = async (
  root: JobRoot,
  rel: Buffer,
  hsmXattr: string,
): Promise<boolean> => {
  const slash = rel.lastIndexOf(0x2f);
  if (slash <= 0) return false;
  const record = await root.getXattr(rel.subarray(0, slash), importStateXattr(hsmXattr));
  return parseImportState(record)?.state === "pending";
};
