import {
  EntryType,
  FsOperationError,
  displayPath,
  errorCode,
  errorMessage,
  joinPathBytes,
  resolveUnderRoot,
} from "@hsmfleet/core";
import { openDir } from "@hsmfleet/fs";
import type { DirEntry } from "@hsmfleet/fs";
import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import {
  emptyExportCounters,
  emptyScanCounters,
  encodeErrorBatch,
  encodeItemResult,
  encodeWalkShard,
  shardIdFor,
  subjects,
} from "@hsmfleet/protocol";
import type {
  ExportCounters,
  ItemError,
  JobStatus,
  ScanCounters,
  WalkShard,
} from "@hsmfleet/protocol";
import type { ResolvedWorkerOptions } from "./options.js";
import { ERRORS_PER_MESSAGE, Publisher } from "./publisher.js";

export interface WalkContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  /** Consumer's max_deliver, to know the last attempt. */
  maxDeliver: number;
  ackWaitMs: number;
  /** Counts for heartbeats. */
  onEntries(n: number): void;
}

/** What a job kind does with the entries of one directory (scan: count; export: compare and queue). */
export interface ShardVisitor {
  /** Before the directory is read (export lists the blobs at this level). */
  begin?(): Promise<void>;
  /** Every entry that could be lstat'ed, with its root-relative path. */
  entry(path: Buffer, e: DirEntry): Promise<void>;
  /** After the last entry: flush what is buffered; returns the work items it published. */
  end(): Promise<number>;
  readonly scan: ScanCounters;
  readonly export: ExportCounters;
}

export interface ShardScope {
  shard: WalkShard;
  job: JobStatus;
  publisher: Publisher;
  /** Records an error against this shard (sent with its result). */
  recordError(err: ItemError): Promise<void>;
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
  const { js, options } = ctx;
  const spec = job.spec;
  const errors: ItemError[] = [];
  let errorSeq = 0;
  let children = 0;
  let walkErrors = 0;
  let vanished = 0;
  const publisher = new Publisher(js);
  const dirPath = resolveUnderRoot(spec.root, shard.path);

  const flushErrors = async (keep: number) => {
    while (errors.length > keep) {
      const batch = errors.splice(0, ERRORS_PER_MESSAGE);
      await publisher.publish(
        subjects.errors(shard.jobId),
        encodeErrorBatch({
          jobId: shard.jobId,
          itemId: shard.shardId,
          sequence: errorSeq,
          errors: batch,
        }),
        `${shard.shardId}.x${errorSeq}`,
      );
      errorSeq++;
    }
  };
  const recordError = async (err: ItemError) => {
    errors.push(err);
    if (errors.length >= ERRORS_PER_MESSAGE * 2) await flushErrors(ERRORS_PER_MESSAGE);
  };
  const visitor = makeVisitor({ shard, job, publisher, recordError });

  let lastWorking = Date.now();
  const keepAlive = () => {
    const now = Date.now();
    if (now - lastWorking > ctx.ackWaitMs / 3) {
      msg.working();
      lastWorking = now;
    }
  };

  await options.hooks.beforeWalkShard?.(shard);
  if (shard.depth === 0) visitor.scan.directories++; // the root itself; every other directory is counted by its parent

  try {
    await visitor.begin?.();
    const reader = await openDir(dirPath, {
      hsmXattr: spec.hsmXattr === "" ? undefined : spec.hsmXattr,
      batchSize: options.readBatchSize,
    });
    try {
      for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
        ctx.onEntries(batch.length);
        for (const e of batch) {
          const rel = joinPathBytes(shard.path, e.name);
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
            if (e.error.operation === "lstat") continue;
          }
          if (e.type === EntryType.Directory) {
            const child: WalkShard = {
              jobId: shard.jobId,
              path: rel,
              depth: shard.depth + 1,
              shardId: shardIdFor(shard.jobId, rel),
            };
            await publisher.publish(
              subjects.walk(shard.jobId),
              encodeWalkShard(child),
              child.shardId,
            );
            children++;
          }
          await visitor.entry(rel, e);
        }
        keepAlive();
      }
    } finally {
      await reader.close();
    }
  } catch (err) {
    if (!(err instanceof FsOperationError)) throw err;
    // The directory itself could not be read: one error for it, the walk goes on elsewhere.
    const gone = err.code === "ENOENT";
    if (gone) vanished++;
    else walkErrors++;
    await recordError({
      path: shard.path,
      operation: err.operation,
      code: err.code,
      message: gone ? "directory vanished during the walk" : errorMessage(err),
      retryable: false,
    });
  }
  children += await visitor.end();
  await flushErrors(ERRORS_PER_MESSAGE);
  await publisher.flush();
  visitor.scan.errors += walkErrors;
  visitor.scan.vanished += vanished;
  // The result is the last word on this shard: everything it published went out before it.
  await js.publish(
    subjects.itemResult(shard.jobId),
    encodeItemResult({
      jobId: shard.jobId,
      itemId: shard.shardId,
      kind: "walk",
      children,
      scan: visitor.scan,
      errors,
      workerId: options.workerId,
      attempt: msg.info.deliveryCount,
      failed: false,
      export: visitor.export,
    }),
    { msgID: `${shard.shardId}.r` },
  );
  await options.hooks.afterWalkShard?.(shard);
  msg.ack();
};

/**
 * The last attempt of an item failed for a reason other than the file system (e.g. NATS or Blob
 * trouble): report it as a failed item so the job ends with a named error instead of waiting.
 */
export const reportFailedItem = async (
  ctx: Pick<WalkContext, "js" | "options">,
  msg: JsMsg,
  item: { jobId: string; itemId: string; kind: "walk" | "transfer"; path: Buffer },
  err: unknown,
): Promise<void> => {
  const scan = emptyScanCounters();
  const exp = emptyExportCounters();
  if (item.kind === "walk") scan.errors = 1;
  else exp.errors = 1;
  await ctx.js.publish(
    subjects.itemResult(item.jobId),
    encodeItemResult({
      jobId: item.jobId,
      itemId: item.itemId,
      kind: item.kind,
      children: 0,
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
      export: exp,
    }),
    { msgID: `${item.itemId}.r` },
  );
  msg.term();
};
