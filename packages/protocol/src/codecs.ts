import { hsmfleet } from "./gen/hsmfleet.js";
import { fromNumber, toSafeNumber } from "./long.js";
import { decodeTransferBatchWire } from "./transfer-batch-decode.js";
import { encodeTransferBatchWire } from "./transfer-batch-encode.js";
import {
  countersToWire,
  countersFromWire,
  exportToWire,
  exportFromWire,
  importToWire,
  importFromWire,
  restoreToWire,
  restoreFromWire,
  inFlightToWire,
  inFlightFromWire,
} from "./counters-wire.js";
import {
  hsmCountersFromWire,
  hsmCountersToWire,
  syncCountersFromWire,
  autoImportCountersFromWire,
  autoImportCountersToWire,
  syncCountersToWire,
} from "./hsm-counters-wire.js";
import type {
  Chunk,
  ErrorBatch,
  ConflictMode,
  ImportDir,
  ImportMode,
  ImportSpec,
  ItemError,
  ItemKind,
  ItemResult,
  JobKind,
  JobSpec,
  JobState,
  JobStatus,
  TransferBatch,
  WalkShard,
  WorkerHeartbeat,
} from "./messages.js";
import type { JobProgress } from "./counters.js";

const pb = hsmfleet.v1;

export const bytes = (value: Uint8Array | null | undefined): Buffer =>
  value ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : Buffer.alloc(0);

// ---- shared pieces ----

const errorToWire = (e: ItemError): hsmfleet.v1.IItemError => ({ ...e });
const errorFromWire = (e: hsmfleet.v1.IItemError): ItemError => ({
  path: bytes(e.path),
  operation: e.operation ?? "",
  code: e.code ?? "",
  message: e.message ?? "",
  retryable: e.retryable ?? false,
});

const importDirToWire = (d: ImportDir): hsmfleet.v1.IImportDir => ({
  ...d,
  mtimeSec: fromNumber(d.mtimeSec, "ImportDir.mtimeSec", false),
});
const importDirFromWire = (d: hsmfleet.v1.IImportDir): ImportDir => ({
  hasAttrs: d.hasAttrs ?? false,
  mode: d.mode ?? 0,
  uid: d.uid ?? 0,
  gid: d.gid ?? 0,
  mtimeSec: toSafeNumber(d.mtimeSec, "ImportDir.mtimeSec"),
  preexisting: d.preexisting ?? false,
});

const importSpecToWire = (s: ImportSpec): hsmfleet.v1.IImportSpec => ({ ...s });
const importSpecFromWire = (s: hsmfleet.v1.IImportSpec | null | undefined): ImportSpec => ({
  mode: (s?.mode || "namespace") as ImportMode,
  conflict: (s?.conflict || "fail") as ConflictMode,
  archiveId: s?.archiveId ?? 0,
  prefixes: s?.prefixes ?? [],
  maxInflight: s?.maxInflight ?? 0,
  restoreBatch: s?.restoreBatch ?? 0,
  fsRoot: bytes(s?.fsRoot),
});

// ---- messages ----

export const encodeWalkShard = (m: WalkShard): Uint8Array =>
  pb.WalkShard.encode({ ...m, importDirs: (m.importDirs ?? []).map(importDirToWire) }).finish();
export const decodeWalkShard = (data: Uint8Array): WalkShard => {
  const m = pb.WalkShard.decode(data);
  const shard: WalkShard = {
    jobId: m.jobId,
    paths: m.paths.map(bytes),
    depth: m.depth,
    shardId: m.shardId,
  };
  if (m.importDirs.length > 0) shard.importDirs = m.importDirs.map(importDirFromWire);
  return shard;
};

/** Hand-written (transfer-batch-encode.ts, transfer-batch-decode.ts): the same bytes as protobufjs, a fraction of the CPU. */
export const encodeTransferBatch = (m: TransferBatch): Uint8Array => encodeTransferBatchWire(m);
export const decodeTransferBatch = (data: Uint8Array): TransferBatch =>
  decodeTransferBatchWire(data);

export const encodeItemResult = (m: ItemResult): Uint8Array =>
  pb.ItemResult.encode({
    ...m,
    scan: countersToWire(m.scan),
    errors: m.errors.map(errorToWire),
    export: exportToWire(m.export),
    import: importToWire(m.import),
    restore: restoreToWire(m.restore),
  }).finish();
export const decodeItemResult = (data: Uint8Array): ItemResult => {
  const m = pb.ItemResult.decode(data);
  return {
    jobId: m.jobId,
    itemId: m.itemId,
    kind: m.kind as ItemKind,
    children: m.children,
    scan: countersFromWire(m.scan),
    errors: m.errors.map(errorFromWire),
    workerId: m.workerId,
    attempt: m.attempt,
    failed: m.failed,
    export: exportFromWire(m.export),
    import: importFromWire(m.import),
    restore: restoreFromWire(m.restore),
    childIds: m.childIds,
    parentId: m.parentId,
  };
};

export const encodeErrorBatch = (m: ErrorBatch): Uint8Array =>
  pb.ErrorBatch.encode({ ...m, errors: m.errors.map(errorToWire) }).finish();
export const decodeErrorBatch = (data: Uint8Array): ErrorBatch => {
  const m = pb.ErrorBatch.decode(data);
  return {
    jobId: m.jobId,
    itemId: m.itemId,
    sequence: m.sequence,
    errors: m.errors.map(errorFromWire),
  };
};

const specToWire = (s: JobSpec): hsmfleet.v1.IJobSpec => ({
  ...s,
  createdAtMs: fromNumber(s.createdAtMs, "createdAtMs", false),
  maxErrors: fromNumber(s.maxErrors, "maxErrors", false),
  blockSize: fromNumber(s.blockSize, "blockSize"),
  batchMaxBytes: fromNumber(s.batchMaxBytes, "batchMaxBytes"),
  chunkSize: fromNumber(s.chunkSize, "chunkSize"),
  import: importSpecToWire(s.import),
  limits: {
    maxBandwidthBytesPerSec: fromNumber(
      s.limits.maxBandwidthBytesPerSec,
      "limits.maxBandwidthBytesPerSec",
    ),
    maxRequestsPerSec: s.limits.maxRequestsPerSec,
  },
});
const specFromWire = (s: hsmfleet.v1.IJobSpec | null | undefined): JobSpec => ({
  jobId: s?.jobId ?? "",
  kind: (s?.kind ?? 0) as JobKind,
  root: bytes(s?.root),
  listEntries: s?.listEntries ?? false,
  batchMaxEntries: s?.batchMaxEntries ?? 0,
  backend: s?.backend ?? "",
  hsmXattr: s?.hsmXattr ?? "",
  createdAtMs: toSafeNumber(s?.createdAtMs, "createdAtMs"),
  createdBy: s?.createdBy ?? "",
  maxErrors: toSafeNumber(s?.maxErrors, "maxErrors"),
  container: s?.container ?? "",
  prefix: s?.prefix ?? "",
  blockSize: toSafeNumber(s?.blockSize, "blockSize"),
  logContainer: s?.logContainer ?? "",
  batchMaxBytes: toSafeNumber(s?.batchMaxBytes, "batchMaxBytes"),
  chunkSize: toSafeNumber(s?.chunkSize, "chunkSize"),
  import: importSpecFromWire(s?.import),
  verifyContent: s?.verifyContent ?? false,
  // Policy jobs only: absent for every other kind (as before the field existed).
  ...(s?.policy ? { policy: s.policy } : {}),
  limits: {
    maxBandwidthBytesPerSec: toSafeNumber(
      s?.limits?.maxBandwidthBytesPerSec,
      "limits.maxBandwidthBytesPerSec",
    ),
    maxRequestsPerSec: s?.limits?.maxRequestsPerSec ?? 0,
  },
  itemKey: bytes(s?.itemKey),
});

export const encodeJobSpec = (m: JobSpec): Uint8Array => pb.JobSpec.encode(specToWire(m)).finish();
export const decodeJobSpec = (data: Uint8Array): JobSpec => specFromWire(pb.JobSpec.decode(data));

export const encodeJobStatus = (m: JobStatus): Uint8Array =>
  pb.JobStatus.encode({
    spec: specToWire(m.spec),
    state: m.state,
    scan: countersToWire(m.scan),
    published: fromNumber(m.published, "published"),
    completed: fromNumber(m.completed, "completed"),
    startedAtMs: fromNumber(m.startedAtMs, "startedAtMs", false),
    updatedAtMs: fromNumber(m.updatedAtMs, "updatedAtMs", false),
    finishedAtMs: fromNumber(m.finishedAtMs, "finishedAtMs", false),
    reason: m.reason,
    resultsSeq: fromNumber(m.resultsSeq, "resultsSeq"),
    coordinator: m.coordinator,
    listFile: m.listFile,
    listBytes: fromNumber(m.listBytes, "listBytes"),
    errorLog: m.errorLog,
    errorLogBytes: fromNumber(m.errorLogBytes, "errorLogBytes"),
    errorSamples: m.errorSamples.map(errorToWire),
    export: exportToWire(m.export),
    import: importToWire(m.import),
    restore: restoreToWire(m.restore),
    conflictLog: m.conflictLog,
    conflictLogBytes: fromNumber(m.conflictLogBytes, "conflictLogBytes"),
    outstanding: m.outstanding,
    hsm: m.hsm === undefined ? null : hsmCountersToWire(m.hsm),
    sync: m.sync === undefined ? null : syncCountersToWire(m.sync),
    autoimport: m.autoimport === undefined ? null : autoImportCountersToWire(m.autoimport),
    inFlight: inFlightToWire(m.inFlight),
  }).finish();
export const decodeJobStatus = (data: Uint8Array): JobStatus => {
  const m = pb.JobStatus.decode(data);
  return {
    spec: specFromWire(m.spec),
    state: m.state as JobState,
    scan: countersFromWire(m.scan),
    published: toSafeNumber(m.published, "published"),
    completed: toSafeNumber(m.completed, "completed"),
    startedAtMs: toSafeNumber(m.startedAtMs, "startedAtMs"),
    updatedAtMs: toSafeNumber(m.updatedAtMs, "updatedAtMs"),
    finishedAtMs: toSafeNumber(m.finishedAtMs, "finishedAtMs"),
    reason: m.reason,
    resultsSeq: toSafeNumber(m.resultsSeq, "resultsSeq"),
    coordinator: m.coordinator,
    listFile: m.listFile,
    listBytes: toSafeNumber(m.listBytes, "listBytes"),
    errorLog: m.errorLog,
    errorLogBytes: toSafeNumber(m.errorLogBytes, "errorLogBytes"),
    errorSamples: m.errorSamples.map(errorFromWire),
    export: exportFromWire(m.export),
    import: importFromWire(m.import),
    restore: restoreFromWire(m.restore),
    conflictLog: m.conflictLog,
    conflictLogBytes: toSafeNumber(m.conflictLogBytes, "conflictLogBytes"),
    outstanding: m.outstanding,
    // Present on HSM jobs only (a record without it decodes as it was written).
    ...(m.hsm ? { hsm: hsmCountersFromWire(m.hsm) } : {}),
    ...(m.sync ? { sync: syncCountersFromWire(m.sync) } : {}),
    ...(m.autoimport ? { autoimport: autoImportCountersFromWire(m.autoimport) } : {}),
    inFlight: inFlightFromWire(m.inFlight),
  };
};

/** Items in one JobProgress message at most; more are ignored (the message is untrusted input). */
export const MAX_PROGRESS_ITEMS = 4096;

export const encodeJobProgress = (m: JobProgress): Uint8Array =>
  pb.JobProgress.encode({
    jobId: m.jobId,
    workerId: m.workerId,
    items: m.items.map((i) => ({
      itemId: i.itemId,
      attempt: i.attempt,
      done: inFlightToWire(i.done),
    })),
  }).finish();
export const decodeJobProgress = (data: Uint8Array): JobProgress => {
  const m = pb.JobProgress.decode(data);
  return {
    jobId: m.jobId,
    workerId: m.workerId,
    items: m.items.slice(0, MAX_PROGRESS_ITEMS).map((i) => ({
      itemId: i.itemId ?? "",
      attempt: i.attempt ?? 0,
      done: inFlightFromWire(i.done),
    })),
  };
};

export const encodeWorkerHeartbeat = (m: WorkerHeartbeat): Uint8Array =>
  pb.WorkerHeartbeat.encode({
    ...m,
    startedAtMs: fromNumber(m.startedAtMs, "startedAtMs", false),
    sentAtMs: fromNumber(m.sentAtMs, "sentAtMs", false),
    itemsDone: fromNumber(m.itemsDone, "itemsDone"),
    entriesRead: fromNumber(m.entriesRead, "entriesRead"),
    bytesMoved: fromNumber(m.bytesMoved, "bytesMoved"),
    rssBytes: fromNumber(m.rssBytes, "rssBytes"),
  }).finish();
export const decodeWorkerHeartbeat = (data: Uint8Array): WorkerHeartbeat => {
  const m = pb.WorkerHeartbeat.decode(data);
  return {
    workerId: m.workerId,
    vmName: m.vmName,
    pid: m.pid,
    version: m.version,
    startedAtMs: toSafeNumber(m.startedAtMs, "startedAtMs"),
    sentAtMs: toSafeNumber(m.sentAtMs, "sentAtMs"),
    itemsInFlight: m.itemsInFlight,
    itemsDone: toSafeNumber(m.itemsDone, "itemsDone"),
    entriesRead: toSafeNumber(m.entriesRead, "entriesRead"),
    bytesMoved: toSafeNumber(m.bytesMoved, "bytesMoved"),
    concurrency: m.concurrency,
    rssBytes: toSafeNumber(m.rssBytes, "rssBytes"),
    requestConcurrency: m.requestConcurrency,
    maxRequestConcurrency: m.maxRequestConcurrency,
  };
};

export const encodeChunk = (m: Chunk): Uint8Array =>
  pb.Chunk.encode({
    ...m,
    offset: fromNumber(m.offset, "offset"),
    length: fromNumber(m.length, "length"),
    blockSize: fromNumber(m.blockSize, "blockSize"),
    fileSize: fromNumber(m.fileSize, "fileSize"),
    fileMtimeSec: fromNumber(m.fileMtimeSec, "fileMtimeSec", false),
  }).finish();
export const decodeChunk = (data: Uint8Array): Chunk => {
  const m = pb.Chunk.decode(data);
  return {
    jobId: m.jobId,
    chunkId: m.chunkId,
    path: bytes(m.path),
    offset: toSafeNumber(m.offset, "offset"),
    length: toSafeNumber(m.length, "length"),
    firstBlock: m.firstBlock,
    blockCount: m.blockCount,
    blockSize: toSafeNumber(m.blockSize, "blockSize"),
    fileSize: toSafeNumber(m.fileSize, "fileSize"),
    fileMtimeSec: toSafeNumber(m.fileMtimeSec, "fileMtimeSec"),
    fileMtimeNsec: m.fileMtimeNsec,
    index: m.index,
    count: m.count,
    blobName: m.blobName,
    etag: m.etag,
    contentMd5: bytes(m.contentMd5),
    mode: m.mode,
    uid: m.uid,
    gid: m.gid,
  };
};
