import { EntryType, HsmFlag } from "@hsmfleet/core";
import {
  emptyExportCounters,
  emptyRestoreCounters,
  emptyScanCounters,
  subjects,
} from "@hsmfleet/protocol";
import { countEntry, toFileEntry } from "../walk/scan-visitor.js";
import { TransferBatcher } from "../runtime/transfer-batcher.js";
import type { ShardScope, ShardVisitor } from "../walk/walk-shard.js";

/** Files per restore work item unless the job says otherwise. */
export const DEFAULT_RESTORE_BATCH = 50;
/**
 * Bytes per restore work item unless the job says otherwise (spec.batchMaxBytes), as export's
 * transfer batches: a few large files are spread over several items, so several workers share them.
 */
export const DEFAULT_RESTORE_BATCH_BYTES = 256 * 1024 * 1024;

/**
 * Restore walk: every released regular file (HS_RELEASED in its HSM state) goes into a restore
 * batch on the job's own subject, whose consumer bounds the files in flight across the fleet.
 * A batch holds up to restoreBatch files and up to batchMaxBytes (a larger file goes alone).
 */
export const restoreVisitor = ({ shard, job, spawn }: ShardScope): ShardVisitor => {
  const perBatch = job.spec.import.restoreBatch || DEFAULT_RESTORE_BATCH;
  const maxBytes = job.spec.batchMaxBytes || DEFAULT_RESTORE_BATCH_BYTES;
  const scan = emptyScanCounters();
  const restore = emptyRestoreCounters();
  const batches = new TransferBatcher(shard, spawn, {
    subject: subjects.restore(shard.jobId),
    tag: "r",
    maxEntries: perBatch,
    maxBytes,
  });
  return {
    scan,
    export: emptyExportCounters(),
    restore,
    entry: async (path, e) => {
      countEntry(scan, e);
      if (e.type !== EntryType.File) return;
      if (((e.hsm?.flags ?? 0) & HsmFlag.Released) === 0) {
        restore.notReleased++;
        return;
      }
      restore.filesFound++;
      restore.bytesFound += e.size;
      await batches.add(toFileEntry(path, e), e.size);
    },
    end: () => batches.flush(),
  };
};
