import { EntryType, hsmStateOfFlags } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import type { DirBatch, DirEntry } from "@hsmfleet/fs";
import {
  emptyExportCounters,
  emptyScanCounters,
  encodeTransferBatch,
  sizeBucket,
  subjects,
} from "@hsmfleet/protocol";
import type { ScanCounters } from "@hsmfleet/protocol";
import { HSM_STATE_UNREAD, ScanTally } from "./scan-tally.js";
import type { ShardScope, ShardVisitor } from "./walk-shard.js";

export const toFileEntry = (path: Buffer, e: DirEntry): FileEntry => ({
  path,
  type: e.type,
  size: e.size,
  mtimeSec: e.mtimeSec,
  mtimeNsec: e.mtimeNsec,
  mode: e.mode,
  uid: e.uid,
  gid: e.gid,
  ino: e.ino,
  nlink: e.nlink,
  hsm: e.hsm,
});

export const countEntry = (c: ScanCounters, e: DirEntry): void =>
  countOf(c, e.type, e.size, e.hsm?.flags ?? 0, e.hsmUnread === true);

/** countEntry of record `off` of a packed batch (no DirEntry made). */
export const countRecord = (c: ScanCounters, batch: DirBatch, off: number): void => {
  const type = batch.type(off);
  if (type === EntryType.File)
    countOf(c, type, batch.size(off), batch.hsmFlags(off), batch.hsmUnread(off));
  else countOf(c, type, 0, 0, false);
};

export { HSM_STATE_UNREAD };

/** Counts one entry of this type (a file: its size and struct hsm_attrs flags, 0 without). */
const countOf = (
  c: ScanCounters,
  type: EntryType,
  size: number,
  hsmFlags: number,
  unread: boolean,
): void => {
  switch (type) {
    case EntryType.File: {
      c.files++;
      c.bytes += size;
      const b = sizeBucket(size);
      while (c.sizeHistogram.length <= b) c.sizeHistogram.push(0);
      c.sizeHistogram[b]!++;
      const state = unread ? HSM_STATE_UNREAD : hsmStateOfFlags(hsmFlags);
      c.hsmStates[state] = (c.hsmStates[state] ?? 0) + 1;
      break;
    }
    case EntryType.Directory:
      c.directories++;
      break;
    case EntryType.Symlink:
      c.symlinks++;
      break;
    default:
      c.other++;
  }
};

/** Scan: count every entry; with --list, send entries back to the coordinator in batches. */
export const scanVisitor = ({ shard, job, publisher }: ShardScope): ShardVisitor => {
  const scan = emptyScanCounters();
  // Plain records are tallied in flat numbers and folded into `scan` at the end of the shard.
  const tally = new ScanTally();
  let listed: FileEntry[] = [];
  let sequence = 0;
  const flush = async () => {
    if (listed.length === 0) return;
    const batchId = `${shard.shardId}.e${sequence}`;
    await publisher.publish(
      subjects.entries(shard.jobId),
      encodeTransferBatch({
        jobId: shard.jobId,
        batchId,
        shardId: shard.shardId,
        sequence,
        entries: listed,
      }),
      batchId,
    );
    sequence++;
    listed = [];
  };
  return {
    scan,
    export: emptyExportCounters(),
    entry: (path, e) => {
      countEntry(scan, e);
      if (job.spec.listEntries) {
        listed.push(toFileEntry(path, e));
        if (listed.length >= job.spec.batchMaxEntries) return flush();
      }
    },
    record: (batch, off, dir) => {
      tally.add(batch, off);
      if (job.spec.listEntries) {
        listed.push(toFileEntry(batch.path(off, dir), batch.entry(off)));
        if (listed.length >= job.spec.batchMaxEntries) return flush();
      }
    },
    // Without --list a whole packed batch is counted in one native call.
    ...(job.spec.listEntries ? {} : { batch: (batch: DirBatch) => tally.addBatch(batch) }),
    // Entry batches are results, not work items: plain publishes.
    end: () => {
      tally.foldInto(scan);
      return flush();
    },
  };
};
