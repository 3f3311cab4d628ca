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
  WALK_GROUP_DIRECTORIES,
} from "@hsmfleet/protocol";
import type {
  ExportCounters,
  ItemError,
  JobStatus,
  ScanCounters,
  WalkShard,
} from "@hsmfleet/protocol";
import { annotateSpan } from "@hsmfleet/telemetry";
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
  /** Before each directory of the shard is read (export lists the blobs at that level). */
  readonly beginDirectory?: (dir: Buffer) => Promise<void>;
  /** Every entry that could be lstat'ed, with its root-relative path. */
  readonly entry: (path: Buffer, e: DirEntry) => Promise<void>;
  /** After the last entry: hand over what is buffered. */
  readonly end: () => Promise<void>;
  readonly scan: ScanCounters;
  readonly export: ExportCounters;
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
}

/** Children held before being announced: at most this many, or this many bytes. */
const WINDOW_ITEMS = 256;
const WINDOW_BYTES = 4 * 1024 * 1024;

/**
 * The termination rule (a phase ends when completed == published) only holds if the coordinator
 * learns about a child before it can learn about the child's own result. Results arrive in stream
 * order, so children are held here and published only after they were counted in the results
 * stream: by a "spawn" notice when the window fills up mid-directory (a huge directory), or by the
 * shard's own final result (every ordinary directory: no extra message). All ids are deterministic,
 * so a redelivered shard re-announces and re-publishes nothing new.
 */
class ChildWindow {
  readonly #js: JetStreamClient;
  readonly #shard: WalkShard;
  readonly #workerId: string;
  readonly #publisher: Publisher;
  #held: Array<{ subject: string; data: Uint8Array; msgID: string }> = [];
  #bytes = 0;
  #notices = 0;

  constructor(js: JetStreamClient, shard: WalkShard, workerId: string, msg: JsMsg) {
    this.#js = js;
    this.#shard = shard;
    this.#workerId = workerId;
    this.#publisher = new Publisher(js, msg);
  }

  get held(): number {
    return this.#held.length;
  }

  async add(subject: string, data: Uint8Array, msgID: string): Promise<void> {
    this.#held.push({ subject, data, msgID });
    this.#bytes += data.length;
    if (this.#held.length < WINDOW_ITEMS && this.#bytes < WINDOW_BYTES) return;
    const id = `${this.#shard.shardId}.s${this.#notices++}`;
    await this.#js.publish(
      subjects.itemResult(this.#shard.jobId),
      encodeItemResult({
        jobId: this.#shard.jobId,
        itemId: id,
        kind: "spawn",
        children: this.#held.length,
        scan: emptyScanCounters(),
        errors: [],
        workerId: this.#workerId,
        attempt: 0,
        failed: false,
        export: emptyExportCounters(),
      }),
      { msgID: id },
    );
    await this.publishHeld();
  }

  /** Publishes what is held; call only once it was announced. */
  async publishHeld(): Promise<void> {
    for (const c of this.#held) await this.#publisher.publish(c.subject, c.data, c.msgID);
    await this.#publisher.flush();
    this.#held = [];
    this.#bytes = 0;
  }
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
  let walkErrors = 0;
  let vanished = 0;
  const publisher = new Publisher(js);

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
  const window = new ChildWindow(js, shard, options.workerId, msg);
  const spawn = (subject: string, data: Uint8Array, msgID: string) =>
    window.add(subject, data, msgID);
  const visitor = makeVisitor({ shard, job, publisher, spawn, recordError });

  let lastWorking = Date.now();
  const keepAlive = () => {
    const now = Date.now();
    if (now - lastWorking > ctx.ackWaitMs / 3) {
      msg.working();
      lastWorking = now;
    }
  };

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

  for (const dir of shard.paths) {
    try {
      await visitor.beginDirectory?.(dir);
      const reader = await openDir(resolveUnderRoot(spec.root, dir), {
        hsmXattr: spec.hsmXattr === "" ? undefined : spec.hsmXattr,
        batchSize: options.readBatchSize,
      });
      try {
        for (let batch = await reader.read(); batch !== null; batch = await reader.read()) {
          ctx.onEntries(batch.length);
          for (const e of batch) {
            const rel = joinPathBytes(dir, e.name);
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
              group.push(rel);
              if (group.length >= WALK_GROUP_DIRECTORIES) await flushGroup();
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
        path: dir,
        operation: err.operation,
        code: err.code,
        message: gone ? "directory vanished during the walk" : errorMessage(err),
        retryable: false,
      });
    }
  }
  await flushGroup();
  await visitor.end();
  await flushErrors(ERRORS_PER_MESSAGE);
  await publisher.flush();
  await options.hooks.beforeWalkResult?.(shard);
  visitor.scan.errors += walkErrors;
  visitor.scan.vanished += vanished;
  annotateSpan(msg, {
    "hsmfleet.entries": visitor.scan.files + visitor.scan.directories + visitor.scan.symlinks,
    "hsmfleet.bytes": visitor.scan.bytes,
    "hsmfleet.errors": walkErrors,
    "hsmfleet.children": window.held,
  });
  // The result is the last word on this shard: everything it published went out before it.
  await js.publish(
    subjects.itemResult(shard.jobId),
    encodeItemResult({
      jobId: shard.jobId,
      itemId: shard.shardId,
      kind: "walk",
      // The children still held: counted here, published right after.
      children: window.held,
      scan: visitor.scan,
      errors,
      workerId: options.workerId,
      attempt: msg.info.deliveryCount,
      failed: false,
      export: visitor.export,
    }),
    { msgID: `${shard.shardId}.r` },
  );
  await window.publishHeld();
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
