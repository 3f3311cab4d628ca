import {
  BlobNameError,
  EntryType,
  blobNameForPath,
  normalizePrefix,
  otherEntryKind,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import type { BlobContainer } from "@hsmfleet/blob";
import { emptyExportCounters, emptyScanCounters, encodeChunk, subjects } from "@hsmfleet/protocol";
import { DEFAULT_EXPORT_CHUNK_SIZE, exportChunksFor } from "./export-chunk.js";
import { countEntry, toFileEntry } from "../walk/scan-visitor.js";
import { transferBatcherFor } from "../runtime/transfer-batcher.js";
import { DEFAULT_LISTING_WINDOW_ENTRIES, ListingWindow } from "./listing-window.js";
import type { ShardScope, ShardVisitor } from "../walk/walk-shard.js";

/** Error-log line of an entry export skips because Blob cannot hold it (a FIFO, a device…). */
export const UNSUPPORTED_OPERATION = "skip";
export const UNSUPPORTED_CODE = "Unsupported";

/** Blob-name prefix of a directory's children: "" for the root without prefix, else "<name>/". */
const levelPrefix = (dirPath: Buffer, prefix: string): string => {
  if (dirPath.length === 0) return prefix === "" ? "" : `${prefix}/`;
  return `${blobNameForPath(dirPath, prefix)}/`;
};

/** What the visitor needs of a container: its per-level listing. */
export type LevelListing = Pick<BlobContainer, "listLevel">;

/** Benchmarks' null target (BenchSeams.nullTarget): a container that holds nothing. */
export const NULL_LISTING: LevelListing = {
  listLevel: () => ({
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.resolve({ done: true as const, value: undefined }),
    }),
  }),
};

/**
 * Export: lists the blobs at this directory's level (not one HEAD per file), queues entries
 * that are new or whose size/modtime differ, and groups them into TransferBatch work items
 * bounded by count and bytes. Metadata-only changes are not exported; deletions never delete.
 * The listing is held `windowEntries` blobs at a time (listing-window.ts): a directory with more
 * blobs is read once per window, each entry compared in the window that holds its name.
 */
export const exportVisitor =
  (container: LevelListing, windowEntries = DEFAULT_LISTING_WINDOW_ENTRIES) =>
  ({ shard, job, spawn, recordError, childPrefix }: ShardScope): ShardVisitor => {
    const spec = job.spec;
    const prefix = normalizePrefix(spec.prefix);
    const scan = emptyScanCounters();
    const exp = emptyExportCounters();
    const existing = new ListingWindow(windowEntries);
    /** The last name `inPass` worked out, for `entry` (the same path right after). */
    let namedPath: Buffer | undefined;
    let namedName: string | undefined;
    /** The entry's blob name, or undefined when it has none (reported in the first window). */
    const nameOf = (path: Buffer): string | undefined => {
      let name: string | undefined;
      try {
        name = blobNameForPath(path, prefix);
      } catch (err) {
        if (!(err instanceof BlobNameError)) throw err;
      }
      namedPath = path;
      namedName = name;
      return name;
    };
    const batches = transferBatcherFor(shard, spawn, spec, undefined, childPrefix);
    const chunkSize = spec.chunkSize || DEFAULT_EXPORT_CHUNK_SIZE;
    let fileSeq = 0;
    /** A file larger than the chunk size: chunk items any worker takes (see export-chunk.ts). */
    const queueChunks = async (entry: FileEntry, name: string) => {
      const fileId = `${childPrefix}.k${fileSeq++}`;
      const chunks = exportChunksFor(shard.jobId, fileId, entry, name, chunkSize, spec.blockSize);
      for (const c of chunks) await spawn(subjects.chunk(shard.jobId), encodeChunk(c), c.chunkId);
      exp.filesQueued++;
      exp.bytesQueued += entry.size;
    };

    /** A promise only when the entry publishes a batch (no microtask per entry otherwise). */
    const queue = (entry: FileEntry): Promise<void> | undefined => {
      exp.filesQueued += entry.type === EntryType.File ? 1 : 0;
      exp.bytesQueued += entry.type === EntryType.File ? entry.size : 0;
      return batches.add(entry, entry.type === EntryType.File ? entry.size : 0);
    };

    return {
      scan,
      export: exp,
      beginDirectory: async (dir) => {
        let level: string;
        try {
          level = levelPrefix(dir, prefix);
        } catch {
          await existing.close();
          return; // the directory's own name is reported by its parent
        }
        await existing.open(container.listLevel(level));
      },
      inPass: (path) => existing.whole || existing.covers(nameOf(path)),
      endPass: () => existing.next(),
      entry: (path, e) => {
        countEntry(scan, e);
        if (e.type === EntryType.Other) {
          exp.unsupported++;
          // Named in the error log so the admin sees what was left behind; not an error (it
          // counts toward no --max-errors): operation "skip", code "Unsupported".
          return recordError({
            path,
            operation: UNSUPPORTED_OPERATION,
            code: UNSUPPORTED_CODE,
            message: `${otherEntryKind(e.mode)}: Blob storage holds files, directories and symlinks only; not exported`,
            retryable: false,
          });
        }
        if (e.type === EntryType.File) {
          exp.filesFound++;
          exp.bytesFound += e.size;
        }
        let name: string;
        try {
          name =
            namedPath === path && namedName !== undefined
              ? namedName
              : blobNameForPath(path, prefix);
        } catch (err) {
          if (!(err instanceof BlobNameError)) throw err;
          exp.errors++;
          return recordError({
            path,
            operation: "name",
            code: "InvalidBlobName",
            message: err.message,
            retryable: false,
          });
        }
        const blob = existing.get(name);
        const unchanged =
          blob !== undefined &&
          (e.type === EntryType.Directory
            ? blob.folder
            : blob.folder === false &&
              blob.symlink === (e.type === EntryType.Symlink) &&
              blob.size === e.size &&
              blob.mtimeSec === e.mtimeSec);
        if (unchanged) {
          exp.skipped++;
          return undefined;
        }
        if (e.type === EntryType.File && e.size > chunkSize)
          return queueChunks(toFileEntry(path, e), name);
        return queue(toFileEntry(path, e));
      },
      end: async () => {
        await existing.close();
        await batches.flush();
      },
    };
  };
