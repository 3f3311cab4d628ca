import {
  EntryType,
  attributesFromMetadata,
  blobNameForPath,
  isFolderStub,
  isSymlinkBlob,
  joinPathBytes,
  metadataForEntry,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { jobRootFor, openDir } from "@hsmfleet/fs";
import type { SyncOp } from "@hsmfleet/protocol";
import { entryAt, sameData, upload } from "./sync-entry.js";
import type { SyncApplyContext } from "./sync-entry.js";

const PERMISSION_MASK = 0o1777;

interface LevelBlob {
  size: number;
  metadata: Record<string, string>;
}

/** Whether the blob's owner, group and permissions are the entry's. */
const sameAttributes = (entry: FileEntry, blob: LevelBlob): boolean => {
  const kind =
    entry.type === EntryType.Directory
      ? "directory"
      : entry.type === EntryType.Symlink
        ? "symlink"
        : "file";
  const a = attributesFromMetadata(blob.metadata, kind);
  return (
    a.uid === entry.uid &&
    a.gid === entry.gid &&
    (a.mode & PERMISSION_MASK) === (entry.mode & PERMISSION_MASK)
  );
};

const sameKind = (entry: FileEntry, blob: LevelBlob): boolean =>
  entry.type === EntryType.Directory
    ? isFolderStub(blob.metadata)
    : entry.type === EntryType.Symlink
      ? isSymlinkBlob(blob.metadata)
      : !isFolderStub(blob.metadata) && !isSymlinkBlob(blob.metadata);

/** Makes one entry's blob match it: upload when missing or changed, metadata when only that differs. */
const reconcileEntry = async (
  ctx: SyncApplyContext,
  entry: FileEntry,
  blob: LevelBlob | undefined,
): Promise<void> => {
  if (entry.type === EntryType.Other) return;
  if (
    blob === undefined ||
    !sameKind(entry, blob) ||
    !sameData(entry, blob) ||
    (entry.type === EntryType.Symlink && blob.size !== entry.size)
  )
    return upload(ctx, entry);
  if (sameAttributes(entry, blob)) return;
  const name = blobNameForPath(entry.path, ctx.prefix);
  if (await ctx.container.setMetadata(name, metadataForEntry(entry)))
    ctx.counters.metadataUpdates++;
};

/** Deletes every blob under `prefix` (a directory that is gone from the tree). */
const deletePrefix = async (ctx: SyncApplyContext, prefix: string): Promise<void> => {
  for await (const name of ctx.container.listNames(prefix, ctx.signal))
    if (await ctx.container.deleteBlob(name)) ctx.counters.deletions++;
};

/**
 * Compares directory `op.path` with the blobs at its level, as export's incremental compare does
 * (one hierarchical listing with metadata, no HEAD per file), and makes them match: entries with
 * no blob, or whose size, modtime or type differ, are uploaded; changed owner, group or
 * permissions are written in place; blobs and prefixes with no entry are deleted (unless `keep`).
 * The directory's own stub is checked too.
 */
export const applyReconcile = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  const dir = op.path;
  const self = dir.length === 0 ? undefined : await entryAt(ctx.root, dir);
  if (dir.length > 0 && (self === undefined || self.type !== EntryType.Directory)) return;
  if (self !== undefined) {
    const props = await ctx.container.getProperties(blobNameForPath(dir, ctx.prefix));
    await reconcileEntry(ctx, self, props);
  }
  const level =
    dir.length === 0
      ? ctx.prefix === ""
        ? ""
        : `${ctx.prefix}/`
      : `${blobNameForPath(dir, ctx.prefix)}/`;
  const blobs = new Map<string, LevelBlob>();
  const prefixes = new Set<string>();
  for await (const b of ctx.container.listLevel(level, { abortSignal: ctx.signal })) {
    if (b.kind === "prefix") prefixes.add(b.name);
    else blobs.set(b.name, { size: b.size, metadata: b.metadata });
  }
  const root = await jobRootFor(ctx.root);
  const reader = await openDir(root.absolute(dir), { beneath: { rootFd: root.fd, rel: dir } });
  try {
    for (let batch = await reader.read(); batch; batch = await reader.read()) {
      for (const e of batch) {
        if (e.error !== undefined) continue; // vanished since readdir
        const path = dir.length === 0 ? Buffer.from(e.name) : joinPathBytes(dir, e.name);
        const name = blobNameForPath(path, ctx.prefix);
        const entry: FileEntry = {
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
        };
        await reconcileEntry(ctx, entry, blobs.get(name));
        blobs.delete(name);
        if (e.type === EntryType.Directory) prefixes.delete(`${name}/`);
      }
    }
  } finally {
    await reader.close();
  }
  if (op.keep) return;
  for (const name of blobs.keys())
    if (await ctx.container.deleteBlob(name)) ctx.counters.deletions++;
  for (const prefix of prefixes) await deletePrefix(ctx, prefix);
};
