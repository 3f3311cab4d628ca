import {
  EntryType,
  FsOperationError,
  displayPath,
  errorCode,
  errorMessage,
  hsmStateName,
  joinPathBytes,
  resolveUnderRoot,
} from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { openDir } from "@hsmfleet/fs";
import type { DirEntry } from "@hsmfleet/fs";
import type { JetStreamClient, JsMsg } from "@hsmfleet/bus";
import {
  emptyExportCounters,
  emptyScanCounters,
  encodeErrorBatch,
  encodeItemResult,
  encodeTransferBatch,
  encodeWalkShard,
  shardIdFor,
  sizeBucket,
  subjects,
} from "@hsmfleet/protocol";
import type { ItemError, JobStatus, ScanCounters, WalkShard } from "@hsmfleet/protocol";
import type { ResolvedWorkerOptions } from "./options.js";

/** Errors carried in the ItemResult itself; more go out in ErrorBatch messages of this size. */
const ERRORS_PER_MESSAGE = 200;
/** Publishes awaited together (pipelined) before waiting for their acks. */
const PUBLISH_WINDOW = 256;

export interface WalkContext {
  js: JetStreamClient;
  options: ResolvedWorkerOptions;
  /** Consumer's max_deliver, to know the last attempt. */
  maxDeliver: number;
  ackWaitMs: number;
  /** Counts for heartbeats. */
  onEntries(n: number): void;
}

const toFileEntry = (path: Buffer, e: DirEntry): FileEntry => ({
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

const countEntry = (c: ScanCounters, e: DirEntry): void => {
  switch (e.type) {
    case EntryType.File: {
      c.files++;
      c.bytes += e.size;
      const b = sizeBucket(e.size);
      while (c.sizeHistogram.length <= b) c.sizeHistogram.push(0);
      c.sizeHistogram[b]!++;
      const state = hsmStateName(e.hsm);
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

/** Publishes with bounded pipelining: many publishes in flight, acks awaited in windows. */
class Publisher {
  readonly #js: JetStreamClient;
  #pending: Promise<unknown>[] = [];
  constructor(js: JetStreamClient) {
    this.#js = js;
  }
  async publish(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    this.#pending.push(this.#js.publish(subject, data, { msgID }));
    if (this.#pending.length >= PUBLISH_WINDOW) await this.flush();
  }
  async flush(): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    await Promise.all(pending);
  }
}

/**
 * Reads one directory: counts its entries, publishes each subdirectory as a new WalkShard, sends
 * entries back in batches when the job lists them, then reports an ItemResult. All ids are
 * deterministic, so a redelivery of this shard publishes nothing new.
 */
export const handleWalkShard = async (
  ctx: WalkContext,
  msg: JsMsg,
  shard: WalkShard,
  job: JobStatus,
): Promise<void> => {
  const { js, options } = ctx;
  const spec = job.spec;
  const counters = emptyScanCounters();
  const errors: ItemError[] = [];
  let errorSeq = 0;
  let entrySeq = 0;
  let children = 0;
  const publisher = new Publisher(js);
  const dirPath = resolveUnderRoot(spec.root, shard.path);

  const recordError = async (err: ItemError, vanished: boolean) => {
    if (vanished) counters.vanished++;
    else counters.errors++;
    errors.push(err);
    if (errors.length >= ERRORS_PER_MESSAGE * 2) {
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

  let lastWorking = Date.now();
  const keepAlive = () => {
    const now = Date.now();
    if (now - lastWorking > ctx.ackWaitMs / 3) {
      msg.working();
      lastWorking = now;
    }
  };

  await options.hooks.beforeWalkShard?.(shard);
  if (shard.depth === 0) counters.directories++; // the root itself; every other directory is counted by its parent

  let listed: FileEntry[] = [];
  const flushListed = async () => {
    if (listed.length === 0) return;
    await publisher.publish(
      subjects.entries(shard.jobId),
      encodeTransferBatch({
        jobId: shard.jobId,
        batchId: `${shard.shardId}.e${entrySeq}`,
        shardId: shard.shardId,
        sequence: entrySeq,
        entries: listed,
      }),
      `${shard.shardId}.e${entrySeq}`,
    );
    entrySeq++;
    listed = [];
  };

  try {
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
            const vanished = e.error.code === "ENOENT";
            await recordError(
              {
                path: rel,
                operation: e.error.operation,
                code: e.error.code,
                message: vanished
                  ? "entry vanished during the scan"
                  : `${e.error.operation} failed`,
                retryable: false,
              },
              vanished,
            );
            if (e.error.operation === "lstat") continue;
          }
          countEntry(counters, e);
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
          if (spec.listEntries) {
            listed.push(toFileEntry(rel, e));
            if (listed.length >= spec.batchMaxEntries) await flushListed();
          }
        }
        keepAlive();
      }
    } finally {
      await reader.close();
    }
  } catch (err) {
    if (!(err instanceof FsOperationError)) throw err;
    // The directory itself could not be read: one error for it, the walk goes on elsewhere.
    const vanished = err.code === "ENOENT";
    await recordError(
      {
        path: shard.path,
        operation: err.operation,
        code: err.code,
        message: vanished ? "directory vanished during the scan" : errorMessage(err),
        retryable: false,
      },
      vanished,
    );
  }
  await flushListed();
  await publisher.flush();

  // Errors beyond what fits in the result go first, so the result is the last word on this shard.
  while (errors.length > ERRORS_PER_MESSAGE) {
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
  await publisher.flush();
  await js.publish(
    subjects.itemResult(shard.jobId),
    encodeItemResult({
      jobId: shard.jobId,
      itemId: shard.shardId,
      kind: "walk",
      children,
      scan: counters,
      errors,
      workerId: options.workerId,
      attempt: msg.info.deliveryCount,
      failed: false,
      export: emptyExportCounters(),
    }),
    { msgID: `${shard.shardId}.r` },
  );
  await options.hooks.afterWalkShard?.(shard);
  msg.ack();
};

/**
 * Last attempt of a shard failed for a reason other than the file system (e.g. NATS trouble):
 * report it as a failed item so the job ends with a named error instead of waiting forever.
 */
export const reportFailedShard = async (
  ctx: WalkContext,
  msg: JsMsg,
  shard: WalkShard,
  err: unknown,
): Promise<void> => {
  const counters = emptyScanCounters();
  counters.errors = 1;
  await ctx.js.publish(
    subjects.itemResult(shard.jobId),
    encodeItemResult({
      jobId: shard.jobId,
      itemId: shard.shardId,
      kind: "walk",
      children: 0,
      scan: counters,
      errors: [
        {
          path: shard.path,
          operation: "walk",
          code: errorCode(err),
          message: `gave up after ${msg.info.deliveryCount} attempts on ${displayPath(shard.path) || "."}: ${errorMessage(err)}`,
          retryable: false,
        },
      ],
      workerId: ctx.options.workerId,
      attempt: msg.info.deliveryCount,
      failed: true,
      export: emptyExportCounters(),
    }),
    { msgID: `${shard.shardId}.r` },
  );
  msg.term();
};
