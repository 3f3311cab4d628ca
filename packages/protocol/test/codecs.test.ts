import test from "ava";
import Long from "long";
import { EntryType, HsmFlag } from "@hsmfleet/core";
import type { FileEntry } from "@hsmfleet/core";
import { hsmfleet } from "../src/gen/hsmfleet.js";
import {
  emptyAutoImportJobCounters,
  newJobSpec,
  newJobStatus,
  emptyInFlightCounters,
  encodeJobProgress,
  decodeJobProgress,
  MAX_PROGRESS_ITEMS,
  decodeChunk,
  decodeHsmActionList,
  decodeHsmActionResult,
  decodeHsmProgress,
  decodeHsmCancel,
  encodeHsmActionResult,
  encodeHsmProgress,
  encodeHsmCancel,
  HsmItemStatus,
  decodeItemResult,
  decodeJobStatus,
  decodeTransferBatch,
  decodeWalkShard,
  decodeWorkerHeartbeat,
  encodeChunk,
  encodeHsmActionList,
  encodeItemResult,
  encodeJobStatus,
  encodeTransferBatch,
  encodeWalkShard,
  encodeWorkerHeartbeat,
  HsmAction,
  JobKind,
  JobState,
  Uint64RangeError,
  emptyScanCounters,
  emptyExportCounters,
  emptyImportCounters,
  emptyRestoreCounters,
  rootWalkShard,
  shardIdFor,
} from "../src/index.js";
import { fromBigInt, toSafeNumber } from "../src/long.js";

const nonUtf8 = Buffer.from([0x64, 0x69, 0x72, 0x2f, 0x66, 0xff, 0xfe, 0x0a]);

const entry = (over: Partial<FileEntry> = {}): FileEntry => ({
  path: nonUtf8,
  type: EntryType.File,
  size: Number.MAX_SAFE_INTEGER,
  mtimeSec: 1_700_000_000,
  mtimeNsec: 999_999_999,
  mode: 0o101777,
  uid: 4_294_967_294,
  gid: 12345,
  ino: 2n ** 64n - 1n,
  nlink: 1,
  hsm: {
    compat: 1,
    flags: HsmFlag.Released | HsmFlag.Exists | HsmFlag.Archived,
    archiveId: 1n,
    archiveVersion: 2n ** 63n,
  },
  ...over,
});

test("walk shard keeps raw path bytes of every directory, the empty root path too", (t) => {
  const shard = { jobId: "scan-1", paths: [nonUtf8, Buffer.from("b")], depth: 7, shardId: "abc" };
  const back = decodeWalkShard(encodeWalkShard(shard));
  t.deepEqual(back, shard);
  t.true(Buffer.isBuffer(back.paths[0]));
  const root = rootWalkShard("scan-1");
  t.deepEqual(decodeWalkShard(encodeWalkShard(root)).paths, [Buffer.alloc(0)]);
});

test("shard ids are deterministic and depend on every path", (t) => {
  const a = [Buffer.from("x"), Buffer.from("y")];
  t.is(shardIdFor("j", a), shardIdFor("j", [Buffer.from("x"), Buffer.from("y")]));
  t.not(shardIdFor("j", a), shardIdFor("j", [Buffer.from("x")]));
  t.not(shardIdFor("j", a), shardIdFor("j", [Buffer.from("xy")]));
  t.not(shardIdFor("j", a), shardIdFor("k", a));
});

test("transfer batch entries survive with exact 64-bit values", (t) => {
  const { hsm: _none, ...withoutHsm } = entry();
  const batch = {
    jobId: "j",
    batchId: "b",
    shardId: "s",
    sequence: 3,
    entries: [
      entry(),
      { ...withoutHsm, type: EntryType.Symlink, size: 5, linkTarget: Buffer.from("../x") },
    ],
  };
  const back = decodeTransferBatch(encodeTransferBatch(batch));
  t.is(back.entries[0]!.size, Number.MAX_SAFE_INTEGER);
  t.is(back.entries[0]!.ino, 2n ** 64n - 1n);
  t.is(back.entries[0]!.hsm!.archiveVersion, 2n ** 63n);
  t.is(back.entries[0]!.mtimeNsec, 999_999_999);
  t.is(back.entries[0]!.uid, 4_294_967_294);
  t.deepEqual(back.entries[0]!.path, nonUtf8);
  t.is(back.entries[1]!.hsm, undefined);
  t.deepEqual(back.entries[1]!.linkTarget, Buffer.from("../x"));
  t.deepEqual(back, batch);
});

test("a size beyond 2^53 is refused on decode rather than rounded", (t) => {
  const wire = hsmfleet.v1.TransferBatch.encode({
    jobId: "j",
    entries: [
      { path: Buffer.from("big"), type: 1, size: Long.fromString("9007199254740993", true) },
    ],
  }).finish();
  const err = t.throws(() => decodeTransferBatch(wire), { instanceOf: Uint64RangeError });
  t.regex(err.message, /FileEntry\.size = 9007199254740993/);
});

test("a size that is not a safe integer is refused on encode", (t) => {
  t.throws(
    () =>
      encodeTransferBatch({
        jobId: "j",
        batchId: "b",
        shardId: "s",
        sequence: 0,
        entries: [entry({ size: 2 ** 53 + 2 })],
      }),
    {
      instanceOf: Uint64RangeError,
    },
  );
});

test("item results carry counters, histogram and HSM states", (t) => {
  const scan = {
    ...emptyScanCounters(),
    files: 10,
    bytes: 2 ** 50,
    sizeHistogram: [1, 0, 4],
    hsmStates: { released: 3, new: 7 },
  };
  const result = {
    jobId: "j",
    itemId: "i",
    kind: "walk" as const,
    children: 4,
    scan,
    errors: [
      {
        path: nonUtf8,
        operation: "opendir",
        code: "EACCES",
        message: "permission denied",
        retryable: false,
      },
    ],
    workerId: "w1",
    attempt: 2,
    failed: false,
    export: { ...emptyExportCounters(), filesExported: 3, bytesExported: 2 ** 40, skipped: 9 },
    import: {
      ...emptyImportCounters(),
      importedFiles: 7,
      totalConflicts: 2,
      bytesImported: 2 ** 41,
    },
    restore: { ...emptyRestoreCounters(), filesRestored: 4, bytesRestored: 2 ** 35 },
    childIds: ["s1.t0", "s1.k0.0"],
    parentId: "",
  };
  t.deepEqual(decodeItemResult(encodeItemResult(result)), result);
});

test("job status round trip", (t) => {
  const status = {
    spec: {
      jobId: "scan-x",
      kind: JobKind.Scan,
      root: Buffer.from("/mnt/lustre"),
      listEntries: true,
      batchMaxEntries: 1000,
      backend: "posix",
      hsmXattr: "trusted.hsm",
      createdAtMs: Date.now(),
      createdBy: "root@host",
      maxErrors: -1,
      container: "data",
      prefix: "p/q",
      blockSize: 8 << 20,
      logContainer: "data-logs",
      batchMaxBytes: 2 ** 30,
      chunkSize: 2 ** 34,
      import: {
        mode: "full" as const,
        conflict: "overwrite-dirty" as const,
        archiveId: 3,
        prefixes: ["a/b", "c"],
        maxInflight: 2000,
        restoreBatch: 50,
        fsRoot: Buffer.from("/mnt/lustre"),
      },
      verifyContent: true,
      limits: { maxBandwidthBytesPerSec: 5 * 1024 ** 3, maxRequestsPerSec: 20_000 },
      itemKey: Buffer.alloc(32, 7),
    },
    state: JobState.Running,
    scan: { ...emptyScanCounters(), directories: 3 },
    published: 10,
    completed: 9,
    startedAtMs: 1,
    updatedAtMs: 2,
    finishedAtMs: 0,
    reason: "",
    resultsSeq: 2 ** 40,
    coordinator: "host:123",
    listFile: "/tmp/list.ndjson",
    listBytes: 12345,
    errorLog: "/var/lib/hsmfleet/jobs/scan-x/errors.ndjson",
    errorLogBytes: 99,
    errorSamples: [
      { path: nonUtf8, operation: "lstat", code: "ENOENT", message: "vanished", retryable: false },
    ],
    export: { ...emptyExportCounters(), filesFound: 5, symlinksExported: 1 },
    import: { ...emptyImportCounters(), preexistingDirectories: 1, totalBlobsWalked: 12 },
    restore: { ...emptyRestoreCounters(), filesFound: 8, notReleased: 1 },
    conflictLog: "/tmp/conflicts.ndjson",
    conflictLogBytes: 77,
    outstanding: ["a", "b.t3"],
    inFlight: {
      ...emptyInFlightCounters(),
      items: 2,
      export: { ...emptyExportCounters(), filesExported: 3, bytesExported: 2 ** 40 },
    },
  };
  t.deepEqual(decodeJobStatus(encodeJobStatus(status)), status);
});

test("an auto-import job record round trips its counters; other kinds have none", (t) => {
  const autoimport = {
    ...emptyAutoImportJobCounters(),
    autoimportState: "InProgress",
    totalBlobsWalked: 2 ** 40,
    totalBlobsImported: 7,
    deletionsSkipped: 2,
    duplicates: 3,
    lastEventConsumedMs: Date.UTC(2026, 11, 6, 3, 0, 0, 123),
  };
  const status = newJobStatus(
    newJobSpec({ jobId: "autoimport-data", kind: JobKind.AutoImport, root: Buffer.from("/t") }),
    { autoimport },
  );
  const back = decodeJobStatus(encodeJobStatus(status));
  t.is(back.spec.kind, JobKind.AutoImport);
  t.deepEqual(back.autoimport, autoimport);
  const plain = newJobStatus(
    newJobSpec({ jobId: "x", kind: JobKind.Scan, root: Buffer.from("/") }),
  );
  t.false("autoimport" in decodeJobStatus(encodeJobStatus(plain)));
});

test("job progress round trips; an item list longer than the cap is cut there", (t) => {
  const item = (i: number) => ({
    itemId: `b${i}`,
    attempt: 2,
    done: {
      ...emptyInFlightCounters(),
      items: 1,
      restore: { ...emptyRestoreCounters(), filesRestored: i, bytesRestored: 2 ** 33 },
    },
  });
  const p = { jobId: "restore-x", workerId: "w1", items: [item(1), item(2)] };
  t.deepEqual(decodeJobProgress(encodeJobProgress(p)), p);
  const many = { ...p, items: Array.from({ length: MAX_PROGRESS_ITEMS + 5 }, (_, i) => item(i)) };
  t.is(decodeJobProgress(encodeJobProgress(many)).items.length, MAX_PROGRESS_ITEMS);
});

test("heartbeat, action list and chunk round trip", (t) => {
  const hb = {
    workerId: "w",
    vmName: "vm1",
    pid: 42,
    version: "0.1.0",
    startedAtMs: 1,
    sentAtMs: 2,
    itemsInFlight: 3,
    itemsDone: 4,
    entriesRead: 5,
    bytesMoved: 2 ** 52,
    concurrency: 16,
    rssBytes: 1 << 30,
    requestConcurrency: 32,
    maxRequestConcurrency: 64,
  };
  t.deepEqual(decodeWorkerHeartbeat(encodeWorkerHeartbeat(hb)), hb);
  const hal = {
    jobId: "h",
    listId: "l",
    archiveId: 1,
    fsname: "lustre",
    flags: 0n,
    items: [
      {
        action: HsmAction.Archive,
        fid: "[0x200000401:0x1:0x0]",
        dfid: "",
        extent: { offset: 0, length: Number.MAX_SAFE_INTEGER },
        cookie: 2n ** 64n - 2n,
        gid: 0n,
        data: Buffer.alloc(0),
        path: Buffer.from("a/b"),
      },
    ],
    partition: 7,
  };
  t.deepEqual(decodeHsmActionList(encodeHsmActionList(hal)), hal);
  const result = {
    jobId: "h",
    listId: "l",
    workerId: "w",
    attempt: 2,
    items: [
      {
        fid: "[0x200000401:0x1:0x0]",
        cookie: 5n,
        action: HsmAction.Release,
        path: Buffer.from([0x61, 0xff]),
        status: HsmItemStatus.Failed,
        error: "release of a refused: file is dirty",
        bytes: 2 ** 40,
      },
    ],
  };
  t.deepEqual(decodeHsmActionResult(encodeHsmActionResult(result)), result);
  const progress = {
    jobId: "h",
    listId: "l",
    fid: "[0x1:0x2:0x0]",
    action: HsmAction.Archive,
    bytesDone: 10,
    bytesTotal: 2 ** 45,
    workerId: "w",
  };
  t.deepEqual(decodeHsmProgress(encodeHsmProgress(progress)), progress);
  const cancel = { fids: ["[0x1:0x2:0x0]"], cookie: 9n, jobId: "hsm-20260101-000000-ab12" };
  t.deepEqual(decodeHsmCancel(encodeHsmCancel(cancel)), cancel);
  const chunk = {
    jobId: "e",
    chunkId: "c",
    path: nonUtf8,
    offset: 256 * 2 ** 20,
    length: 256 * 2 ** 20,
    firstBlock: 32,
    blockCount: 32,
    blockSize: 8 * 2 ** 20,
    fileSize: 2 ** 45,
    fileMtimeSec: 1,
    fileMtimeNsec: 2,
    index: 1,
    count: 3,
    blobName: "a/b",
    etag: '"0x8D"',
    contentMd5: Buffer.alloc(16, 7),
    mode: 0o644,
    uid: 1,
    gid: 2,
  };
  t.deepEqual(decodeChunk(encodeChunk(chunk)), chunk);
});

test("walk shard with import directories and transfer batch with blob names round trip", (t) => {
  const shard = {
    jobId: "import-x",
    paths: [Buffer.from("a"), nonUtf8],
    depth: 2,
    shardId: "s1",
    importDirs: [
      { hasAttrs: true, mode: 0o1777, uid: 5, gid: 6, mtimeSec: -5, preexisting: false },
      { hasAttrs: false, mode: 0, uid: 0, gid: 0, mtimeSec: 0, preexisting: true },
    ],
  };
  t.deepEqual(decodeWalkShard(encodeWalkShard(shard)), shard);
  const plain = { jobId: "scan-x", paths: [Buffer.alloc(0)], depth: 0, shardId: "r" };
  t.deepEqual(decodeWalkShard(encodeWalkShard(plain)), plain);
  const batch = {
    jobId: "import-x",
    batchId: "b",
    shardId: "s1",
    sequence: 0,
    entries: [],
    blobNames: ["a/b", "c"],
  };
  t.deepEqual(decodeTransferBatch(encodeTransferBatch(batch)), batch);
});

test("toSafeNumber takes every 64-bit value that is a safe integer and refuses every other", (t) => {
  const edges = [
    0n,
    1n,
    2n ** 31n,
    2n ** 32n - 1n,
    2n ** 32n,
    2n ** 52n,
    2n ** 53n - 1n,
    2n ** 53n,
  ];
  const values = [
    ...edges,
    ...edges.map((v) => v + 1n),
    ...edges.map((v) => -v),
    ...edges.map((v) => -v - 1n),
    2n ** 63n - 1n,
    -(2n ** 63n),
    2n ** 64n - 1n,
  ];
  for (const v of values)
    for (const unsigned of [true, false]) {
      if (unsigned ? v < 0n || v >= 2n ** 64n : v < -(2n ** 63n) || v >= 2n ** 63n) continue;
      const long = fromBigInt(v, unsigned);
      const safe = v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER);
      if (safe)
        t.is(toSafeNumber(long, "f"), Number(v), `${v} (${unsigned ? "unsigned" : "signed"})`);
      else
        t.throws(
          () => toSafeNumber(long, "f"),
          { instanceOf: Uint64RangeError },
          `${v} (${unsigned ? "unsigned" : "signed"})`,
        );
    }
});
