import {
  EntryType,
  FsOperationError,
  displayPath,
  errorCode,
  errorMessage,
  joinPathBytes,
} from "@hsmfleet/core";
import { DirBatch, isPlainRecord } from "@hsmfleet/fs";
import type { DirEntry, DirReader, OpenedDir } from "@hsmfleet/fs";
import type { JsMsg } from "@hsmfleet/bus";
import {
  emptyScanCounters,
  newItemResult,
  encodeItemResult,
  encodeWalkShard,
  shardIdFor,
  subjects,
  WALK_GROUP_DIRECTORIES,
  walkFailureId,
} from "@hsmfleet/protocol";
import type {
  ExportCounters,
  ItemError,
  RestoreCounters,
  JobStatus,
  ScanCounters,
  WalkShard,
} from "@hsmfleet/protocol";
import { annotateSpan } from "@hsmfleet/telemetry";
import type { Publisher } from "../runtime/publisher.js";
import type { DirectoryReadOptions } from "./walk-namespace.js";
import { ShardRun } from "./shard-run.js";
import type { WalkContext } from "./shard-run.js";

export type { WalkContext } from "./shard-run.js";
export { ShardRun } from "./shard-run.js";

/** What a job kind does with the entries of one directory (scan: count; export: compare and queue). */
export interface ShardVisitor {
  /** Before each directory of the shard is read (export lists the blobs at that level). */
  readonly beginDirectory?: (dir: Buffer) => Promise<void>;
  /**
   * A directory read in several passes (export: one window of a huge blob listing each): whether
   * the entry at `path` belongs to this pass. Absent: one pass, every entry.
   */
  readonly inPass?: (path: Buffer) => boolean;
  /** After each pass over a directory: true to read it again for the next one. */
  readonly endPass?: () => Promise<boolean>;
  /**
   * Every entry that could be lstat'ed, with its root-relative path (once, in its pass). A
   * visitor with nothing to wait for returns nothing: the walk then goes on without a microtask.
   */
  readonly entry: (path: Buffer, e: DirEntry) => Promise<void> | void;
  /**
   * Optional fast path (scan, policy): a regular file, symlink or other non-directory read without
   * error, as record `off` of a packed batch of directory `dir` (root-relative), instead of
   * `entry()` — no object, name copy or path per entry unless the visitor asks for one
   * (`batch.path(off, dir)`). Directories and failed entries still go to `entry()`. Used only
   * without `inPass` and when the namespace's reader offers packed batches.
   */
  readonly record?: (batch: DirBatch, off: number, dir: Buffer) => Promise<void> | void;
  /**
   * Faster still, with `record` (scan without --list): takes every plain record of a packed batch
   * at once (counted natively: ScanTally.addBatch) and returns the offsets of the others, which
   * then go to `entry()` in order. Not used for a shard an earlier attempt partly covered (its
   * records are filtered one by one, and go to `record`).
   */
  readonly batch?: (batch: DirBatch) => Uint32Array;
  /**
   * The visitor needs the HSM state only of regular files with a size in this range (a policy
   * whose rules all select sizes): the others are read without their xattr (`hsmUnread`).
   * Absent: every regular file's.
   */
  readonly hsmSizes?: { min: number; max: number } | undefined;
  /** After the last entry: hand over what is buffered. */
  readonly end: () => Promise<void>;
  readonly scan: ScanCounters;
  readonly export: ExportCounters;
  /** Restore walks count released files here. */
  readonly restore?: RestoreCounters;
}

export interface ShardScope {
  shard: WalkShard;
  job: JobStatus;
  /** For results-stream messages that are not work (entry lists, errors). */
  publisher: Publisher;
  /** Publishes a new work item of this job, counted as this shard's child (see ChildWindow). */
  spawn: (subject: string, data: Uint8Array, msgID: string) => Promise<void>;
  /** Records an error against this shard (sent with its result). */
  recordError: (err: ItemError) => Promise<void>;
  /** Delivery attempt of this shard (1 = first; more: an earlier attempt's worker died). */
  attempt: number;
  /**
   * What the ids of this shard's children start with: the shard's id in its first attempt,
   * `<shardId>.a<n>` in attempt n > 1 (declarations.ts: a redelivery's batches are its own).
   */
  childPrefix: string;
}

export type VisitorFactory = (scope: ShardScope) => ShardVisitor;

/**
 * Reads one directory: publishes each subdirectory as a new WalkShard, hands every entry to the
 * job kind's visitor, then reports one ItemResult. All message ids are deterministic, so a
 * redelivery of this shard publishes nothing new.
 */
export const handleWalkShard = async (
  ctx: WalkContext,
  msg: JsMsg,
  shard: WalkShard,
  job: JobStatus,
  makeVisitor: VisitorFactory,
): Promise<void> => {
  const run = new ShardRun(ctx, msg, shard, job);
  try {
    if (await run.resume()) return;
    await walkShardWith(ctx, shard, job, makeVisitor, run);
  } finally {
    run.stop();
  }
};

const walkShardWith = async (
  ctx: WalkContext,
  shard: WalkShard,
  job: JobStatus,
  makeVisitor: VisitorFactory,
  run: ShardRun,
): Promise<void> => {
  const { options } = ctx;
  const spec = job.spec;
  let walkErrors = 0;
  let vanished = 0;
  const { spawn, recordError, publisher } = run;
  const visitor = makeVisitor({
    shard,
    job,
    publisher,
    spawn,
    recordError,
    attempt: run.attempt,
    childPrefix: run.childPrefix,
  });

  // Subdirectories found go out in groups of siblings, one shard per group.
  let group: Buffer[] = [];
  const flushGroup = async () => {
    if (group.length === 0) return;
    const child: WalkShard = {
      jobId: shard.jobId,
      paths: group,
      depth: shard.depth + 1,
      shardId: shardIdFor(shard.jobId, group),
    };
    group = [];
    await spawn(subjects.walk(shard.jobId), encodeWalkShard(child), child.shardId);
  };

  await options.hooks.beforeWalkShard?.(shard);
  if (shard.depth === 0) visitor.scan.directories++; // the root itself; every other directory is counted by its parent

  // What an earlier attempt's children already cover (ShardRun.covered; empty in attempt 1).
  const coveredDirs = run.covered.directories;
  const coveredEntries = run.covered.entries;
  const coversAny = coveredDirs.size + coveredEntries.size > 0;

  /** One entry read as a DirEntry: errors recorded, directories grouped, then the visitor. */
  const visitEntry = async (rel: Buffer, e: DirEntry): Promise<void> => {
    if (e.error) {
      const gone = e.error.code === "ENOENT";
      if (gone) vanished++;
      else walkErrors++;
      await recordError({
        path: rel,
        operation: e.error.operation,
        code: e.error.code,
        message: gone ? "entry vanished during the walk" : `${e.error.operation} failed`,
        retryable: false,
      });
      if (e.error.operation === "lstat") return;
    }
    const key = coversAny ? rel.toString("latin1") : "";
    if (e.type === EntryType.Directory && !(coversAny && coveredDirs.has(key))) {
      group.push(rel);
      if (group.length >= WALK_GROUP_DIRECTORIES) await flushGroup();
    }
    if (coversAny && coveredEntries.has(key)) return; // an earlier attempt's child holds it
    const pending = visitor.entry(rel, e);
    if (pending !== undefined) await pending;
  };

  const readOptions = {
    hsmXattr: spec.hsmXattr === "" ? undefined : spec.hsmXattr,
    batchSize: options.readBatchSize,
    hsmSizes: visitor.hsmSizes,
  };
  const record = visitor.record;
  const wholeBatch = visitor.batch;
  /** One packed batch of `dir`: plain records to the visitor's fast path, the rest as entries. */
  const visitPacked = async (
    batch: DirBatch,
    dir: Buffer,
    visit: NonNullable<ShardVisitor["record"]>,
  ): Promise<void> => {
    ctx.onEntries(batch.count);
    if (wholeBatch !== undefined && !coversAny) {
      for (const off of wholeBatch(batch)) await visitEntry(batch.path(off, dir), batch.entry(off));
      run.keepAlive();
      return;
    }
    for (let i = 0, off = DirBatch.FIRST; i < batch.count; i++, off = batch.next(off)) {
      if (coversAny && coveredEntries.has(batch.path(off, dir).toString("latin1"))) {
        // an earlier attempt's child holds it
      } else if (isPlainRecord(batch, off)) {
        const pending = visit(batch, off, dir);
        if (pending !== undefined) await pending;
      } else await visitEntry(batch.path(off, dir), batch.entry(off));
    }
    run.keepAlive();
  };
  /** The packed batches of `reader` to its end (the next read on the threadpool meanwhile). */
  const readPacked = async (
    reader: DirReader,
    dir: Buffer,
    visit: NonNullable<ShardVisitor["record"]>,
  ): Promise<void> => {
    let next = prefetchPacked(reader);
    for (let batch = await next; batch !== null; batch = await next) {
      next = prefetchPacked(reader);
      await visitPacked(batch, dir, visit);
    }
  };

  // A visitor that takes packed records in one pass (scan, policy): the shard's directories are
  // opened and first read in one threadpool job, not one job and its promises per directory.
  const grouped =
    record !== undefined &&
    visitor.inPass === undefined &&
    visitor.beginDirectory === undefined &&
    visitor.endPass === undefined
      ? await openGroup(options.namespace, spec.root, shard.paths, readOptions)
      : undefined;

  try {
    for (let d = 0; d < shard.paths.length; d++) {
      const dir = shard.paths[d]!;
      try {
        const opened = grouped?.[d];
        if (opened instanceof Error) throw opened;
        if (opened !== undefined && record !== undefined) {
          try {
            if (opened.first !== null) await visitPacked(opened.first, dir, record);
            if (opened.rest !== undefined) await readPacked(opened.rest, dir, record);
          } finally {
            await opened.rest?.close();
          }
          continue;
        }
        await visitor.beginDirectory?.(dir);
        for (let more = true; more; more = (await visitor.endPass?.()) ?? false) {
          const reader = await options.namespace.openDirectory(spec.root, dir, readOptions);
          try {
            if (record !== undefined && visitor.inPass === undefined && reader.readPacked) {
              // Packed batches, read in place: the visitor's fast path for every plain entry.
              await readPacked(reader, dir, record);
            } else {
              // The next batch is read on the threadpool while this one is visited (a huge
              // directory keeps both CPUs busy); a failed read surfaces where it is awaited.
              let next = prefetch(reader);
              for (let batch = await next; batch !== null; batch = await next) {
                next = prefetch(reader);
                ctx.onEntries(batch.length);
                for (const e of batch) {
                  const rel = joinPathBytes(dir, e.name);
                  if (visitor.inPass !== undefined && !visitor.inPass(rel)) continue;
                  await visitEntry(rel, e);
                }
                run.keepAlive();
              }
            }
          } finally {
            await reader.close();
          }
        }
      } catch (err) {
        if (!(err instanceof FsOperationError)) throw err;
        // The directory itself could not be read: one error for it, the walk goes on elsewhere.
        const gone = err.code === "ENOENT";
        if (gone) vanished++;
        else walkErrors++;
        await recordError({
          path: dir,
          operation: err.operation,
          code: err.code,
          message: gone ? "directory vanished during the walk" : errorMessage(err),
          retryable: false,
        });
      }
    }
  } finally {
    // Readers of directories not reached (a visit threw): closed now, not at garbage collection.
    for (const g of grouped ?? [])
      if (g !== undefined && !(g instanceof Error)) g.rest?.close().catch(() => undefined);
  }
  await flushGroup();
  await visitor.end();
  visitor.scan.errors += walkErrors;
  visitor.scan.vanished += vanished;
  annotateSpan(run.message, {
    "hsmfleet.entries": visitor.scan.files + visitor.scan.directories + visitor.scan.symlinks,
    "hsmfleet.bytes": visitor.scan.bytes,
    "hsmfleet.errors": walkErrors,
  });
  await run.finish({
    scan: visitor.scan,
    export: visitor.export,
    ...(visitor.restore ? { restore: visitor.restore } : {}),
  });
};

/**
 * The namespace's openDirectories of a shard's directories; undefined (each opened on its own, as
 * before) when the namespace has none or the call failed as a whole (each open then meets the
 * failure itself, with the error it gives).
 */
const openGroup = async (
  namespace: WalkContext["options"]["namespace"],
  root: Buffer,
  dirs: readonly Buffer[],
  readOptions: DirectoryReadOptions,
): Promise<Array<OpenedDir | Error | undefined> | undefined> => {
  if (namespace.openDirectories === undefined) return undefined;
  try {
    return await namespace.openDirectories(root, dirs, readOptions);
  } catch {
    return undefined;
  }
};

/** Starts reading the next batch; marked handled so a visit that throws leaves no stray rejection. */
const prefetch = (reader: DirReader): Promise<DirEntry[] | null> => {
  const p = reader.read();
  p.catch(() => undefined);
  return p;
};

/** prefetch() for packed batches (the reader offers them). */
const prefetchPacked = (reader: DirReader): Promise<DirBatch | null> => {
  const p = reader.readPacked!();
  p.catch(() => undefined);
  return p;
};

/**
 * The last attempt of an item failed for a reason other than the file system (e.g. NATS or Blob
 * trouble): report it as a failed item so the job ends with a named error instead of waiting.
 */
export const reportFailedItem = async (
  ctx: Pick<WalkContext, "js" | "options">,
  msg: JsMsg,
  item: { jobId: string; itemId: string; kind: "walk" | "transfer" | "chunk"; path: Buffer },
  err: unknown,
): Promise<void> => {
  const scan = emptyScanCounters();
  // Counted once, as a walk error: jobErrors() sums every kind's error counter.
  scan.errors = 1;
  await ctx.js.publish(
    subjects.itemResult(item.jobId),
    encodeItemResult(
      newItemResult({
        jobId: item.jobId,
        itemId: item.itemId,
        kind: item.kind,
        scan,
        errors: [
          {
            path: item.path,
            operation: item.kind,
            code: errorCode(err),
            message: `gave up after ${msg.info.deliveryCount} attempts on ${displayPath(item.path) || "."}: ${errorMessage(err)}`,
            retryable: false,
          },
        ],
        workerId: ctx.options.workerId,
        attempt: msg.info.deliveryCount,
        failed: true,
      }),
    ),
    // A walk shard's redelivery may have stored an empty notice under an attempt's result id
    // (declarations.ts): its failure goes under an id of its own (protocol walk-ids.ts).
    { msgID: item.kind === "walk" ? walkFailureId(item.itemId) : `${item.itemId}.r` },
  );
  msg.term();
};
