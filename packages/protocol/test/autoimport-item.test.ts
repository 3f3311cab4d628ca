import test from "ava";
import {
  autoImportShardOf,
  autoImportSubjects,
  decodeAutoImportBatch,
  decodeAutoImportResult,
  emptyAutoImportCounters,
  encodeAutoImportBatch,
  encodeAutoImportResult,
  jobIdOfSubject,
} from "../src/index.js";

const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

test("autoimport batch and result round trip", (t) => {
  const batch = {
    jobId: "autoimport-data",
    batchId: "autoimport-data.k1.3.0.1",
    enableDeletions: true,
    changes: [
      {
        kind: "created" as const,
        blob: "d/é.txt",
        sequencer: "00a1",
        eventTime: "2026-12-06T00:00:00Z",
      },
      { kind: "renamed" as const, blob: "a", destination: "b", sequencer: "00a2", eventTime: "" },
      {
        kind: "directoryDeleted" as const,
        blob: "dir",
        recursive: true,
        sequencer: "ff",
        eventTime: "",
      },
    ],
  };
  t.deepEqual(decodeAutoImportBatch(encodeAutoImportBatch(batch)), batch);
  const result = {
    jobId: batch.jobId,
    batchId: batch.batchId,
    workerId: "w1",
    counters: { ...emptyAutoImportCounters(), totalBlobsImported: 1, vanished: 2 },
    outcomes: ["ok" as const, "stale" as const, "failed" as const],
    failures: [{ index: 2, message: "EIO" }],
  };
  t.deepEqual(decodeAutoImportResult(encodeAutoImportResult(result)), result);
});

test("autoimport items are untrusted: wrong kinds, sequencers, types and sizes are refused", (t) => {
  const good = { jobId: "j", batchId: "b", enableDeletions: false, changes: [] };
  const change = { kind: "created", blob: "x", sequencer: "1", eventTime: "" };
  for (const bad of [
    { ...good, enableDeletions: "yes" },
    { ...good, changes: [{ ...change, kind: "chmod" }] },
    { ...good, changes: [{ ...change, sequencer: "../1" }] },
    { ...good, changes: [{ ...change, blob: 7 }] },
    { ...good, changes: [{ ...change, recursive: "true" }] },
    { ...good, changes: new Array(10_001).fill(change) },
    { ...good, jobId: "x".repeat(65) },
  ])
    t.throws(() => decodeAutoImportBatch(bytes(bad)), undefined, JSON.stringify(bad).slice(0, 80));
  t.throws(() => decodeAutoImportBatch(new Uint8Array([0xff, 0xfe])), { message: /not JSON/ });
  const result = {
    jobId: "j",
    batchId: "b",
    workerId: "w",
    counters: emptyAutoImportCounters(),
    outcomes: ["ok"],
    failures: [],
  };
  t.notThrows(() => decodeAutoImportResult(bytes(result)));
  t.throws(() => decodeAutoImportResult(bytes({ ...result, outcomes: ["done"] })));
  t.throws(() =>
    decodeAutoImportResult(bytes({ ...result, counters: { ...result.counters, deletions: -1 } })),
  );
  t.throws(() =>
    decodeAutoImportResult(bytes({ ...result, failures: [{ index: -1, message: "" }] })),
  );
});

test("a blob's shard is stable and its subject names the job (4 tokens)", (t) => {
  const shard = autoImportShardOf("d/f1.txt", 32);
  t.is(autoImportShardOf("d/f1.txt", 32), shard);
  t.true(shard >= 0 && shard < 32);
  const shards = new Set(Array.from({ length: 200 }, (_, i) => autoImportShardOf(`f${i}`, 32)));
  t.true(shards.size > 16, "names spread over the shards");
  t.is(jobIdOfSubject(autoImportSubjects.batch("autoimport-data", shard)), "autoimport-data");
  t.is(jobIdOfSubject(autoImportSubjects.result("autoimport-data")), "autoimport-data");
});
