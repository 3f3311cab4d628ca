import test from "ava";
import {
  JobKind,
  decodeJobStatus,
  decodeSyncBatch,
  decodeSyncResult,
  emptySyncCounters,
  encodeJobStatus,
  encodeSyncBatch,
  encodeSyncResult,
  newJobSpec,
  newJobStatus,
} from "../src/index.js";

const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

test("sync batch and result round trip, raw-byte paths included", (t) => {
  const batch = {
    jobId: "sync-x",
    batchId: "sync-x.1.0.1",
    ops: [
      { op: "upload" as const, path: Buffer.from([0x61, 0xff, 0x0a]) },
      { op: "move" as const, path: Buffer.from("b"), from: Buffer.from("a") },
      { op: "delete" as const, path: Buffer.from("d"), dir: true },
      { op: "reconcile" as const, path: Buffer.alloc(0), keep: true },
    ],
  };
  t.deepEqual(decodeSyncBatch(encodeSyncBatch(batch)), batch);
  const result = {
    jobId: "sync-x",
    batchId: "sync-x.1.0.1",
    workerId: "w",
    counters: { ...emptySyncCounters(), renames: 3 },
    requeue: [Buffer.from("f")],
    failures: [{ path: "p", operation: "sync-upload", message: "boom" }],
  };
  t.deepEqual(decodeSyncResult(encodeSyncResult(result)), result);
});

test("sync items are untrusted: wrong shapes are refused with the field named", (t) => {
  t.throws(
    () => decodeSyncBatch(bytes({ jobId: "j", batchId: "b", ops: [{ op: "rm", path: "" }] })),
    {
      message: /op 0 has an unknown kind/,
    },
  );
  t.throws(
    () => decodeSyncBatch(bytes({ jobId: "j", batchId: "b", ops: [{ op: "upload", path: "%%" }] })),
    {
      message: /ops\[0\]\.path is not base64/,
    },
  );
  t.throws(() => decodeSyncBatch(bytes({ jobId: 1, batchId: "b", ops: [] })), { message: /jobId/ });
  t.throws(
    () =>
      decodeSyncResult(
        bytes({
          jobId: "j",
          batchId: "b",
          workerId: "w",
          counters: { ...emptySyncCounters(), renames: -1 },
          requeue: [],
          failures: [],
        }),
      ),
    { message: /counter renames is not a count/ },
  );
  t.throws(() => decodeSyncBatch(new Uint8Array([0xff])), { message: /not JSON/ });
});

test("a sync job record keeps its counters through the codec", (t) => {
  const status = newJobStatus(
    newJobSpec({ jobId: "sync-x", kind: JobKind.Sync, root: Buffer.from("/t") }),
    {
      sync: {
        source: "lustre:fs-MDT0000",
        syncState: "running",
        recordsRead: 10,
        recordsApplied: 9,
        filesExported: 4,
        bytesExported: 2 ** 40,
        directoriesExported: 1,
        symlinksExported: 1,
        metadataUpdates: 2,
        renames: 1,
        deletions: 1,
        deletionsPending: 1,
        failures: 0,
        backlog: 1,
        msBehind: 1500,
        lastFullySynchronizedMs: 1_796_000_000_000,
      },
    },
  );
  const back = decodeJobStatus(encodeJobStatus(status));
  t.is(back.spec.kind, JobKind.Sync);
  t.deepEqual(back.sync, status.sync);
});
