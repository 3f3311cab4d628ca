import {
  BlobNameError,
  EntryType,
  HsmFlag,
  attributesFromMetadata,
  blobNameForPath,
  displayPath,
  formatModtime,
  isFolderStub,
  isImportMarkerName,
  isSymlinkBlob,
  normalizePrefix,
  pathForBlobName,
} from "@hsmfleet/core";
import type { BlobEntryKind } from "@hsmfleet/core";
import type { BlobContainer, BlobLevelEntry } from "@hsmfleet/blob";
import { emptyExportCounters, emptyScanCounters } from "@hsmfleet/protocol";
import type { ItemError } from "@hsmfleet/protocol";
import { countEntry, toFileEntry } from "../walk/scan-visitor.js";
import { transferBatcherFor } from "../runtime/transfer-batcher.js";
import type { ShardScope, ShardVisitor } from "../walk/walk-shard.js";
import { DEFAULT_LISTING_WINDOW_ENTRIES, ListingWindow } from "../export/listing-window.js";

/** The operation name of every difference in a verify job's error log. */
export const VERIFY_OPERATION = "verify";

/**
 * Codes of differences, as dcmp names them: only on one side, or a field that differs. Each is
 * one line of the job's error log: `{ path, operation: "verify", code, message }`.
 */
export const VerifyDifference = {
  /** In the tree, no blob of that name. */
  MissingBlob: "MissingBlob",
  /** A blob at this level with no entry in the tree. */
  ExtraBlob: "ExtraBlob",
  /** File vs directory stub vs symlink blob. */
  Type: "TypeDiffers",
  Size: "SizeDiffers",
  Mtime: "MtimeDiffers",
  Mode: "ModeDiffers",
  Owner: "OwnerDiffers",
  Group: "GroupDiffers",
  /** The data differs (MD5 or bytes). */
  Content: "ContentDiffers",
  /** Entries Blob cannot hold (devices, FIFOs, sockets): never exported. */
  Unsupported: "Unsupported",
} as const;

interface LevelBlob {
  kind: BlobEntryKind;
  size: number;
  mtimeSec: number | undefined;
  mode: number;
  uid: number;
  gid: number;
  seen: boolean;
}

const blobKind = (metadata: Record<string, string>): BlobEntryKind =>
  isFolderStub(metadata) ? "directory" : isSymlinkBlob(metadata) ? "symlink" : "file";

const levelBlob = (b: Extract<BlobLevelEntry, { kind: "blob" }>): LevelBlob => {
  const kind = blobKind(b.metadata);
  const attrs = attributesFromMetadata(b.metadata, kind);
  return {
    kind,
    size: b.size,
    mtimeSec: attrs.mtimeSec,
    mode: attrs.mode,
    uid: attrs.uid,
    gid: attrs.gid,
    seen: false,
  };
};

const entryKind = (type: EntryType): BlobEntryKind | undefined =>
  type === EntryType.Directory
    ? "directory"
    : type === EntryType.Symlink
      ? "symlink"
      : type === EntryType.File
        ? "file"
        : undefined;

const levelPrefix = (dirPath: Buffer, prefix: string): string => {
  if (dirPath.length === 0) return prefix === "" ? "" : `${prefix}/`;
  return `${blobNameForPath(dirPath, prefix)}/`;
};

const octal = (mode: number): string => mode.toString(8).padStart(4, "0");

/** A time as the blob's `modtime` metadata writes it (`2026-11-21 15:30:00 +0000`). */
const modtime = (sec: number): string => {
  try {
    return formatModtime(sec);
  } catch {
    return String(sec); // beyond what a Date holds
  }
};

/**
 * Verify: for each directory, lists the blobs at that level once and compares every entry with
 * its blob — existence, type, size, modtime (seconds), permissions, owner and group — reporting
 * each difference as one error line (operation `verify`), plus the blobs that have no entry.
 * With `verifyContent`, files whose attributes match are queued (TransferBatch) for a data
 * comparison by any worker — except released HSM files, whose data is only in the archive (the
 * stub holds zeros): they count as `released`, their content not checked. Counters
 * (ExportCounters): filesFound/bytesFound = files compared, skipped = entries identical (without
 * a content check), filesQueued/bytesQueued = files queued for a content check, released =
 * released files, errors = differences and failures. An import's own marker files at the root of
 * the tree (`IMPORT_FAILED.<start>`, …: isImportMarkerName) are left out of the comparison.
 *
 * A directory's listing is held `windowEntries` blobs at a time (a ListingWindow, as export's): a
 * directory with more blobs is read once per window, each entry compared in the window that holds
 * its name, and the blobs of a window no entry claimed are reported before the next is loaded —
 * memory is one window and one listing page, however large the directory.
 */
export const verifyVisitor =
  (container: Pick<BlobContainer, "listLevel">, windowEntries = DEFAULT_LISTING_WINDOW_ENTRIES) =>
  ({ shard, job, spawn, recordError, childPrefix }: ShardScope): ShardVisitor => {
    const spec = job.spec;
    const prefix = normalizePrefix(spec.prefix);
    const scan = emptyScanCounters();
    const exp = emptyExportCounters();
    const level = new ListingWindow<LevelBlob>(windowEntries, levelBlob);
    /** The last name `inPass` worked out, for `entry` (the same path right after). */
    let named: { path: Buffer; name: string | undefined } | undefined;
    const nameOf = (path: Buffer): string | undefined => {
      let name: string | undefined;
      try {
        name = blobNameForPath(path, prefix);
      } catch (err) {
        if (!(err instanceof BlobNameError)) throw err;
      }
      named = { path, name };
      return name;
    };
    const batches = transferBatcherFor(shard, spawn, spec, undefined, childPrefix);

    const differ = async (path: Buffer, code: string, message: string): Promise<void> => {
      exp.errors++;
      const error: ItemError = {
        path,
        operation: VERIFY_OPERATION,
        code,
        message: `${displayPath(path)}: ${message}`,
        retryable: false,
      };
      await recordError(error);
    };

    /** Blobs of the window just compared that no entry claimed. */
    const reportExtras = async () => {
      for (const [name, b] of level.entries()) {
        if (b.seen) continue;
        let path: Buffer;
        try {
          path = pathForBlobName(name, prefix);
        } catch {
          path = Buffer.from(name);
        }
        await differ(
          path,
          VerifyDifference.ExtraBlob,
          `blob "${name}" (${b.kind}, ${b.size} bytes) has no entry in the tree`,
        );
      }
      level.clearWindow();
    };

    return {
      scan,
      export: exp,
      beginDirectory: async (dir) => {
        await reportExtras();
        let name: string;
        try {
          name = levelPrefix(dir, prefix);
        } catch {
          await level.close();
          return; // the directory's own name was reported by its parent
        }
        await level.open(container.listLevel(name));
      },
      inPass: (path) => level.whole || level.covers(nameOf(path)),
      endPass: async () => {
        await reportExtras();
        return level.next();
      },
      entry: async (path, e) => {
        if (
          e.type === EntryType.File &&
          path.length === e.name.length &&
          isImportMarkerName(e.name)
        ) {
          const marker = level.get(blobNameForPath(path, prefix));
          if (marker !== undefined) marker.seen = true;
          return;
        }
        countEntry(scan, e);
        const kind = entryKind(e.type);
        let name: string;
        try {
          name =
            named !== undefined && named.path === path && named.name !== undefined
              ? named.name
              : blobNameForPath(path, prefix);
        } catch (err) {
          if (!(err instanceof BlobNameError)) throw err;
          await differ(path, "InvalidBlobName", err.message);
          return;
        }
        const blob = level.get(name);
        if (blob !== undefined) blob.seen = true;
        if (kind === undefined) {
          exp.unsupported++;
          return;
        }
        if (kind === "file") {
          exp.filesFound++;
          exp.bytesFound += e.size;
        }
        if (blob === undefined) {
          await differ(path, VerifyDifference.MissingBlob, `no blob "${name}"`);
          return;
        }
        if (blob.kind !== kind) {
          await differ(path, VerifyDifference.Type, `${kind} in the tree, ${blob.kind} blob`);
          return;
        }
        const found: string[] = [];
        const check = async (code: string, ok: boolean, what: string) => {
          if (ok) return;
          found.push(code);
          await differ(path, code, what);
        };
        if (kind !== "directory") {
          await check(
            VerifyDifference.Size,
            blob.size === e.size,
            `size ${e.size} in the tree, ${blob.size} in the blob`,
          );
        }
        // A directory's time changes with every entry added or removed, and export (like AMLFS)
        // never refreshes a directory stub: directories are compared without their time.
        if (kind !== "directory") {
          await check(
            VerifyDifference.Mtime,
            blob.mtimeSec === e.mtimeSec,
            `modtime ${modtime(e.mtimeSec)} in the tree, ${blob.mtimeSec === undefined ? "none" : modtime(blob.mtimeSec)} in the blob`,
          );
        }
        // Symlinks: their mode is always 0777, so it is not compared.
        if (kind !== "symlink") {
          await check(
            VerifyDifference.Mode,
            blob.mode === (e.mode & 0o1777),
            `permissions ${octal(e.mode & 0o1777)} in the tree, ${octal(blob.mode)} in the blob`,
          );
        }
        await check(
          VerifyDifference.Owner,
          blob.uid === e.uid,
          `owner ${e.uid} in the tree, ${blob.uid} in the blob`,
        );
        await check(
          VerifyDifference.Group,
          blob.gid === e.gid,
          `group ${e.gid} in the tree, ${blob.gid} in the blob`,
        );
        if (found.length > 0) return;
        const released =
          kind === "file" && e.size > 0 && ((e.hsm?.flags ?? 0) & HsmFlag.Released) !== 0;
        if (released) exp.released++;
        if (kind === "file" && spec.verifyContent && e.size > 0 && !released) {
          await batches.add(toFileEntry(path, e), e.size);
          exp.filesQueued++;
          exp.bytesQueued += e.size;
          return;
        }
        exp.skipped++;
      },
      end: async () => {
        await reportExtras();
        await level.close();
        await batches.flush();
      },
    };
  };
