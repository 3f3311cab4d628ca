import { DEFAULT_HSM_XATTR, EntryType, HsmFlag } from "@hsmfleet/core";
import { jobRootFor } from "@hsmfleet/fs";
import {
  emptyExportCounters,
  emptyRestoreCounters,
  emptyScanCounters,
  subjects,
} from "@hsmfleet/protocol";
import { countEntry, toFileEntry } from "../walk/scan-visitor.js";
import { restoredBy } from "../runtime/archive-location.js";
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
export const restoreVisitor = ({
  shard,
  job,
  spawn,
  attempt,
  childPrefix,
}: ShardScope): ShardVisitor => {
  const hsmXattr = job.spec.hsmXattr || DEFAULT_HSM_XATTR;
  const perBatch = job.spec.import.restoreBatch || DEFAULT_RESTORE_BATCH;
  const maxBytes = job.spec.batchMaxBytes || DEFAULT_RESTORE_BATCH_BYTES;
  const scan = emptyScanCounters();
  const restore = emptyRestoreCounters();
  const batches = new TransferBatcher(shard, spawn, {
    idPrefix: childPrefix,
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
        // Delivered again after its worker died: a file this job restored meanwhile was released
        // when the first attempt saw it, and is put in the same batch again (so the batch, a
        // duplicate of the one published then, is rebuilt as it was and the counts stay exact).
        const ours =
          attempt > 1 &&
          (await restoredBy(await jobRootFor(job.spec.root), path, hsmXattr, shard.jobId));
        if (!ours) {
          restore.notReleased++;
          return;
        }
      }
      restore.filesFound++;
      restore.bytesFound += e.size;
      await batches.add(toFileEntry(path, e), e.size);
    },
    end: () => batches.flush(),
  };
};
