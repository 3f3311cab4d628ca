import { EntryType, blobNameForPath, metadataForEntry, pathForBlobName } from "@hsmfleet/core";
import type { SyncOp } from "@hsmfleet/protocol";
import { entryAt, fail, sameData, upload } from "./sync-entry.js";
import type { SyncApplyContext } from "./sync-entry.js";
import { applyReconcile } from "./sync-reconcile.js";

export type { SyncApplyContext } from "./sync-entry.js";

const applyUpload = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  const entry = await entryAt(ctx.root, op.path);
  if (entry !== undefined) await upload(ctx, entry);
};

/** Attributes changed: metadata in place when the blob holds the same data, else an upload. */
const applyMeta = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  const entry = await entryAt(ctx.root, op.path);
  if (entry === undefined || entry.type === EntryType.Other) return;
  const name = blobNameForPath(op.path, ctx.prefix);
  const props = await ctx.container.getProperties(name);
  if (props === undefined || !sameData(entry, props)) return upload(ctx, entry);
  if (await ctx.container.setMetadata(name, metadataForEntry(entry)))
    ctx.counters.metadataUpdates++;
  else await upload(ctx, entry);
};

/** Deletes the blob (a directory: its stub and every blob under it) unless the path is back. */
const applyDelete = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  if ((await entryAt(ctx.root, op.path)) !== undefined) return;
  const name = blobNameForPath(op.path, ctx.prefix);
  if (await ctx.container.deleteBlob(name)) ctx.counters.deletions++;
  if (!op.dir) return;
  for await (const child of ctx.container.listNames(`${name}/`, ctx.signal)) {
    // Only blobs whose entry is gone: the directory may have been made again and filled.
    const path = pathForBlobName(child, ctx.prefix);
    if ((await entryAt(ctx.root, path)) !== undefined) continue;
    if (await ctx.container.deleteBlob(child)) ctx.counters.deletions++;
  }
};

/**
 * A rename: the blob at the former name is copied server-side to the new one (no data through
 * this host) when it holds the entry's data, else the entry is uploaded; the metadata is set
 * from the entry; then the former blob is deleted unless an entry has that name again.
 */
const applyMove = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  const from = op.from!;
  const fromName = blobNameForPath(from, ctx.prefix);
  const toName = blobNameForPath(op.path, ctx.prefix);
  const entry = await entryAt(ctx.root, op.path);
  if (entry !== undefined && entry.type !== EntryType.Other) {
    if (entry.type !== EntryType.File) await upload(ctx, entry);
    else {
      const props = await ctx.container.getProperties(fromName);
      if (props !== undefined && sameData(entry, props)) {
        if (await ctx.container.copyBlob(fromName, toName, ctx.signal)) {
          await ctx.container.setMetadata(toName, metadataForEntry(entry));
        } else await upload(ctx, entry);
      } else await upload(ctx, entry);
    }
    ctx.counters.renames++;
  }
  if ((await entryAt(ctx.root, from)) === undefined && (await ctx.container.deleteBlob(fromName)))
    ctx.counters.deletions++;
};

/** Applies one operation; a failure is recorded with its path, operation and cause. */
export const applySyncOp = async (ctx: SyncApplyContext, op: SyncOp): Promise<void> => {
  try {
    switch (op.op) {
      case "upload":
        return await applyUpload(ctx, op);
      case "meta":
        return await applyMeta(ctx, op);
      case "delete":
        return await applyDelete(ctx, op);
      case "move":
        return await applyMove(ctx, op);
      case "reconcile":
        return await applyReconcile(ctx, op);
    }
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    fail(ctx, op.path, `sync-${op.op}`, err);
  }
};
