/**
 * Every work item is untrusted input: anyone who can publish on NATS can put a message on a work
 * subject. Before a worker touches the file system or storage for an item it checks, in order:
 *
 * 1. it decodes (else UndecodableWorkItemError);
 * 2. it names the job of its subject (`hsmfleet.work.<job>.<kind>`);
 * 3. it carries the job's seal (an HMAC with the job record's key: only the job's coordinator and
 *    workers can make one), so it is an item the job published (else UnsolicitedWorkItemError);
 * 4. its paths are relative, normalized, without `.`/`..`/empty components or NUL bytes, and its
 *    numbers are consistent (else UnsafeWorkItemError). The job root, container and prefix come
 *    from the job record in KV, never from the message; blob names are derived from paths by the
 *    worker (`blobNameFor`), a name in a message is only compared against that.
 *
 * A refused item is terminated (never redelivered) with the error's name; see worker.ts.
 */
import { blobNameForPath, displayPath, errorMessage, HsmfleetError } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { hasValidSeal } from "@hsmfleet/bus";
import type { JsMsg } from "@hsmfleet/bus";
import {
  JobKind,
  JobState,
  decodeAutoImportBatch,
  decodeChunk,
  decodeHsmActionList,
  decodeTransferBatch,
  decodeSyncBatch,
  decodeWalkShard,
  jobIdOfSubject,
} from "@hsmfleet/protocol";
import type {
  AutoImportBatch,
  Chunk,
  HsmActionList,
  JobStatus,
  SyncBatch,
  TransferBatch,
  WalkShard,
} from "@hsmfleet/protocol";

/** Which refusal: also the `code` in the job's error log. */
export type RefusalCode = "UNDECODABLE_WORK_ITEM" | "UNSOLICITED_WORK_ITEM" | "UNSAFE_WORK_ITEM";

/** A work item that is never run: terminated, never redelivered (runWorkConsumer). */
export class RefusedWorkItemError extends HsmfleetError {
  readonly terminal = true as const;
  readonly code: RefusalCode;
  readonly subject: string;
  constructor(code: RefusalCode, subject: string, message: string, cause?: unknown) {
    super(`${message} (work item on ${subject})`, { cause });
    this.name = "RefusedWorkItemError";
    this.code = code;
    this.subject = subject;
  }
}

/** The payload is not the message its subject promises. */
export class UndecodableWorkItemError extends RefusedWorkItemError {
  constructor(subject: string, what: string, cause: unknown) {
    super("UNDECODABLE_WORK_ITEM", subject, `undecodable ${what}: ${errorMessage(cause)}`, cause);
    this.name = "UndecodableWorkItemError";
  }
}

/** The job never published this item: no valid seal, or another job's subject. */
export class UnsolicitedWorkItemError extends RefusedWorkItemError {
  constructor(subject: string, why: string) {
    super("UNSOLICITED_WORK_ITEM", subject, `unsolicited work item refused: ${why}`);
    this.name = "UnsolicitedWorkItemError";
  }
}

/** A path or number that would leave the job (or make no sense). */
export class UnsafeWorkItemError extends RefusedWorkItemError {
  /** Set when the item carried its job's seal: the job counts on a result for it. */
  item: RefusedItem | undefined;
  constructor(subject: string, why: string) {
    super("UNSAFE_WORK_ITEM", subject, `unsafe work item refused: ${why}`);
    this.name = "UnsafeWorkItemError";
  }
}

/** The work item a refusal is about, for the failed result its job waits for. */
export interface RefusedItem {
  itemId: string;
  kind: "walk" | "transfer" | "chunk";
  path: Buffer;
}

/** Longest relative path accepted (Linux PATH_MAX). */
export const MAX_RELATIVE_PATH_BYTES = 4096;
/** Entries in one item, at most (far above any batch bound the coordinator sets). */
export const MAX_ITEM_ENTRIES = 100_000;
/** Chunks of one imported file, at most (byte ranges: 2^24 of 1 MiB is 16 TiB). */
const MAX_IMPORT_CHUNKS = 1 << 24;
/** Largest file a chunk may describe (Azure: 50,000 blocks of 4,000 MiB). */
const MAX_FILE_BYTES = 50_000 * 4000 * 1024 * 1024;

const SLASH = 0x2f;

/**
 * Why `path` is not a safe job-relative path, or undefined when it is: relative (no leading '/'),
 * normalized (no empty, '.' or '..' component, no trailing '/'), no NUL byte, at most
 * MAX_RELATIVE_PATH_BYTES. The empty path (the job root itself) only where `rootAllowed`.
 */
export const unsafePathReason = (path: Buffer, rootAllowed = false): string | undefined => {
  if (path.length === 0) return rootAllowed ? undefined : "empty path";
  if (path.length > MAX_RELATIVE_PATH_BYTES)
    return `path of ${path.length} bytes (more than ${MAX_RELATIVE_PATH_BYTES})`;
  if (path.includes(0)) return "NUL byte in path";
  if (path[0] === SLASH) return "absolute path";
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    const len = i - start;
    if (len === 0) return "empty path component";
    if (len === 1 && path[start] === 0x2e) return "'.' path component";
    if (len === 2 && path[start] === 0x2e && path[start + 1] === 0x2e) return "'..' path component";
    start = i + 1;
  }
  return undefined;
};

const checkPath = (subject: string, path: Buffer, rootAllowed = false): void => {
  const why = unsafePathReason(path, rootAllowed);
  if (why !== undefined)
    throw new UnsafeWorkItemError(subject, `${why}: ${JSON.stringify(displayPath(path))}`);
};

/** Decodes a work item, turning any decoder failure into UndecodableWorkItemError. */
export const decodeWorkItem = <T>(
  subject: string,
  data: Uint8Array,
  what: string,
  decode: (data: Uint8Array) => T,
): T => {
  try {
    return decode(data);
  } catch (err) {
    throw new UndecodableWorkItemError(subject, what, err);
  }
};

/** The job named by a work subject; UnsolicitedWorkItemError if it names none. */
export const jobOfWorkSubject = (subject: string): string => {
  const jobId = jobIdOfSubject(subject);
  if (jobId === undefined || !subject.startsWith("hsmfleet.work."))
    throw new UnsolicitedWorkItemError(subject, "the subject names no job");
  return jobId;
};

/** The item names the job of its subject. */
export const checkItemJob = (subject: string, subjectJob: string, itemJob: string): void => {
  if (itemJob !== subjectJob)
    throw new UnsolicitedWorkItemError(
      subject,
      `the item names job ${JSON.stringify(itemJob)}, its subject job ${subjectJob}`,
    );
};

const checkId = (subject: string, what: string, id: string): void => {
  if (id.length === 0 || id.length > 512)
    throw new UnsafeWorkItemError(subject, `${what} of ${id.length} characters`);
};

const checkEntries = (subject: string, entries: FileEntry[]): void => {
  if (entries.length > MAX_ITEM_ENTRIES)
    throw new UnsafeWorkItemError(subject, `${entries.length} entries in one item`);
  for (const e of entries) checkPath(subject, e.path);
};

/** A walk shard: 1–16 directory paths under the root (the root itself as the empty path). */
export const checkWalkShard = (subject: string, shard: WalkShard): void => {
  checkId(subject, "shard id", shard.shardId);
  if (shard.paths.length === 0 || shard.paths.length > 16)
    throw new UnsafeWorkItemError(subject, `walk shard of ${shard.paths.length} directories`);
  for (const p of shard.paths) checkPath(subject, p, true);
  const dirs = shard.importDirs ?? [];
  if (dirs.length > shard.paths.length)
    throw new UnsafeWorkItemError(subject, "more directory attributes than directories");
};

/**
 * The blob a job-relative path maps to, derived by the worker: export, verify and restore under
 * the job's prefix; import from the whole container (its paths are the blob names).
 */
export const blobNameFor = (job: JobStatus, path: Buffer): string =>
  blobNameForPath(path, job.spec.kind === JobKind.Import ? "" : job.spec.prefix);

/** A transfer batch: safe entry paths; import blob names (if any) exactly those derived from them. */
export const checkTransferBatch = (subject: string, batch: TransferBatch, job: JobStatus): void => {
  checkId(subject, "batch id", batch.batchId);
  checkEntries(subject, batch.entries);
  const names = batch.blobNames ?? [];
  if (names.length > batch.entries.length)
    throw new UnsafeWorkItemError(subject, "more blob names than entries");
  names.forEach((name, i) => checkBlobName(subject, job, batch.entries[i]!.path, name));
};

const checkBlobName = (subject: string, job: JobStatus, path: Buffer, name: string): void => {
  if (name === "") return;
  let derived: string;
  try {
    derived = blobNameFor(job, path);
  } catch (err) {
    throw new UnsafeWorkItemError(subject, `no blob name for the path: ${errorMessage(err)}`);
  }
  if (derived !== name)
    throw new UnsafeWorkItemError(
      subject,
      `blob name ${JSON.stringify(name)} is not the one of path ${JSON.stringify(displayPath(path))}`,
    );
};

const wholeNumber = (n: number) => Number.isSafeInteger(n) && n >= 0;

/** A chunk: a safe path, a range inside the file, a block layout that adds up. */
export const checkChunk = (subject: string, chunk: Chunk, job: JobStatus): void => {
  checkId(subject, "chunk id", chunk.chunkId);
  checkPath(subject, chunk.path);
  checkBlobName(subject, job, chunk.path, chunk.blobName);
  const numbers = [chunk.offset, chunk.length, chunk.fileSize, chunk.blockSize, chunk.index];
  if (!numbers.every(wholeNumber) || chunk.fileSize > MAX_FILE_BYTES)
    throw new UnsafeWorkItemError(subject, "chunk numbers out of range");
  // Export chunks are ranges of whole blocks (at most 50,000 per blob); import chunks are byte
  // ranges without blocks.
  const exporting = job.spec.kind === JobKind.Export;
  const maxCount = exporting ? 50_000 : MAX_IMPORT_CHUNKS;
  if (chunk.count < 1 || chunk.count > maxCount || chunk.index >= chunk.count)
    throw new UnsafeWorkItemError(subject, `chunk ${chunk.index} of ${chunk.count}`);
  if (chunk.length === 0 || chunk.offset + chunk.length > chunk.fileSize)
    throw new UnsafeWorkItemError(
      subject,
      `range ${chunk.offset}+${chunk.length} outside a file of ${chunk.fileSize} bytes`,
    );
  if (
    exporting &&
    (chunk.blockSize === 0 ||
      chunk.blockCount === 0 ||
      chunk.firstBlock + chunk.blockCount > 50_000)
  )
    throw new UnsafeWorkItemError(subject, "chunk block layout out of range");
};

/** An HSM action list: safe paths, a sane number of items. */
export const checkHsmActionList = (subject: string, list: HsmActionList): void => {
  checkId(subject, "list id", list.listId);
  if (list.items.length > MAX_ITEM_ENTRIES)
    throw new UnsafeWorkItemError(subject, `${list.items.length} actions in one list`);
  // A file given as the root itself has the empty relative path.
  for (const item of list.items) checkPath(subject, item.path, true);
};

/** How one kind of work item is decoded and checked. */
export interface WorkItemRules<T extends { jobId: string }> {
  what: string;
  decode: (data: Uint8Array) => T;
  check: (subject: string, item: T, job: JobStatus) => void;
  /** Id, kind and first path of an item (for the failed result of a sealed item refused). */
  describe: (item: T) => RefusedItem;
}

export const WALK_SHARD_RULES: WorkItemRules<WalkShard> = {
  what: "walk shard",
  decode: decodeWalkShard,
  check: (subject, shard) => checkWalkShard(subject, shard),
  describe: (s) => ({ itemId: s.shardId, kind: "walk", path: s.paths[0] ?? Buffer.alloc(0) }),
};
export const TRANSFER_BATCH_RULES: WorkItemRules<TransferBatch> = {
  what: "transfer batch",
  decode: decodeTransferBatch,
  check: checkTransferBatch,
  describe: (b) => ({
    itemId: b.batchId,
    kind: "transfer",
    path: b.entries[0]?.path ?? Buffer.alloc(0),
  }),
};
/** A sync batch: its id, and every path (and former path of a move) safe and job-relative. */
export const SYNC_BATCH_RULES: WorkItemRules<SyncBatch> = {
  what: "sync batch",
  decode: decodeSyncBatch,
  check: (subject, batch) => {
    checkId(subject, "batch id", batch.batchId);
    for (const op of batch.ops) {
      checkPath(subject, op.path, op.op === "reconcile");
      if (op.from !== undefined) checkPath(subject, op.from);
      if (op.op === "move" && op.from === undefined)
        throw new UnsafeWorkItemError(subject, "move without a former path");
    }
  },
  describe: (b) => ({
    itemId: b.batchId,
    kind: "transfer",
    path: b.ops[0]?.path ?? Buffer.alloc(0),
  }),
};
/**
 * An autoimport batch: its id, and only for an autoimport job. Blob names are checked where they
 * become paths (BlobChangeApplier: an unsafe name is an error of that change, never a path).
 */
export const AUTOIMPORT_BATCH_RULES: WorkItemRules<AutoImportBatch> = {
  what: "autoimport batch",
  decode: decodeAutoImportBatch,
  check: (subject, batch, job) => {
    checkId(subject, "batch id", batch.batchId);
    if (job.spec.kind !== JobKind.AutoImport)
      throw new UnsafeWorkItemError(subject, "an autoimport batch for a job of another kind");
    for (const c of batch.changes)
      if (c.blob === "" || c.blob.includes("\0"))
        throw new UnsafeWorkItemError(subject, "an empty blob name or one with a NUL byte");
  },
  describe: (b) => ({
    itemId: b.batchId,
    kind: "transfer",
    path: Buffer.from(b.changes[0]?.blob ?? ""),
  }),
};
export const CHUNK_RULES: WorkItemRules<Chunk> = {
  what: "chunk",
  decode: decodeChunk,
  check: checkChunk,
  describe: (c) => ({ itemId: c.chunkId, kind: "chunk", path: c.path }),
};
export const HSM_ACTION_LIST_RULES: WorkItemRules<HsmActionList> = {
  what: "HSM action list",
  decode: decodeHsmActionList,
  check: (subject, list) => checkHsmActionList(subject, list),
  // HSM results are per list (HsmActionResult), not ItemResults: never reported this way.
  describe: (l) => ({ itemId: l.listId, kind: "transfer", path: Buffer.alloc(0) }),
};

const running = (job: JobStatus | undefined): job is JobStatus =>
  job !== undefined && (job.state === JobState.Running || job.state === JobState.Pending);

/**
 * Decodes and checks one received work item against its job record (`job`: the record of the
 * job its subject names, undefined if there is none): it decodes, names that job, and — when the
 * job is running — carries the job's seal and passes `rules.check`. Returns the item; throws a
 * RefusedWorkItemError. An item of a job that is not running is returned unchecked: it is dropped
 * without work by the caller.
 */
export const admitWorkItem = <T extends { jobId: string }>(
  msg: Pick<JsMsg, "subject" | "data" | "headers">,
  job: JobStatus | undefined,
  rules: WorkItemRules<T>,
): T => {
  const jobId = jobOfWorkSubject(msg.subject);
  const item = decodeWorkItem(msg.subject, msg.data, rules.what, rules.decode);
  checkItemJob(msg.subject, jobId, item.jobId);
  if (!running(job)) return item;
  if (!hasValidSeal(job.spec.itemKey, msg))
    throw new UnsolicitedWorkItemError(
      msg.subject,
      `no valid seal of job ${jobId} (forged, altered, or from another job)`,
    );
  try {
    rules.check(msg.subject, item, job);
  } catch (err) {
    // The job published it (its seal is valid), so the job waits for its result: say which.
    if (err instanceof UnsafeWorkItemError) err.item = rules.describe(item);
    throw err;
  }
  return item;
};
