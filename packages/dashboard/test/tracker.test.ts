import test from "ava";
import {
  JobKind,
  JobState,
  emptyExportCounters,
  emptyInFlightCounters,
  newJobSpec,
  newJobStatus,
} from "@hsmfleet/protocol";
import type { WorkerHeartbeat } from "@hsmfleet/protocol";
import { ThroughputTracker } from "../src/index.js";

const GiB = 1024 ** 3;

const hb = (workerId: string, vmName: string, bytesMoved: number): WorkerHeartbeat => ({
  workerId,
  vmName,
  pid: 1,
  version: "0.1.0",
  startedAtMs: 0,
  sentAtMs: 0,
  itemsInFlight: 2,
  itemsDone: 10,
  entriesRead: 0,
  bytesMoved,
  concurrency: 16,
  rssBytes: 0,
  requestConcurrency: 32,
  maxRequestConcurrency: 64,
});

test("rates per worker and VM from cumulative heartbeats, against the ceiling", (t) => {
  const tracker = new ThroughputTracker({ ceilingBytesPerSecond: 8 * GiB });
  tracker.heartbeat(hb("a1", "vm-a", 0), 0);
  tracker.heartbeat(hb("a2", "vm-a", 10 * GiB), 0);
  tracker.heartbeat(hb("b1", "vm-b", 0), 0);
  // Rates are averaged over the window, whatever readings fall in between.
  tracker.heartbeat(hb("a1", "vm-a", 1), 100);
  tracker.heartbeat(hb("a1", "vm-a", 2 * GiB), 2000);
  tracker.heartbeat(hb("a2", "vm-a", 12 * GiB), 2000);
  tracker.heartbeat(hb("b1", "vm-b", 4 * GiB), 2000);
  const s = tracker.snapshot(2000);
  t.is(s.bytesPerSecond, 4 * GiB);
  t.is(s.shareOfCeiling, 0.5);
  t.deepEqual(
    s.vms.map((v) => [v.vmName, v.workers, v.bytesPerSecond]),
    [
      ["vm-a", 2, 2 * GiB],
      ["vm-b", 1, 2 * GiB],
    ],
  );
  t.deepEqual(s.history, [[2000, 4 * GiB]]);
  // A restarted worker (counter went down) starts over instead of showing a negative rate.
  tracker.heartbeat(hb("b1", "vm-b", 0), 3000);
  t.is(tracker.snapshot(3000).vms.find((v) => v.vmName === "vm-b")?.bytesPerSecond, 0);
  // Silent workers drop out.
  t.deepEqual(tracker.snapshot(30_000).workers, []);
});

test("job progress and ETA from job records", (t) => {
  const tracker = new ThroughputTracker();
  const job = newJobStatus(
    newJobSpec({ jobId: "export-1", kind: JobKind.Export, root: Buffer.from("/src") }),
    { published: 10 },
  );
  job.completed = 10;
  job.export.bytesFound = 100 * GiB;
  job.export.bytesExported = 10 * GiB;
  job.updatedAtMs = 1000;
  tracker.jobs([job], 1000);
  tracker.jobs([{ ...job, export: { ...job.export, bytesExported: 30 * GiB }, updatedAtMs: 3000 }]);
  const [view] = tracker.snapshot(3000).jobs;
  t.like(view, {
    jobId: "export-1",
    kind: "export",
    state: "running",
    bytesPerSecond: 10 * GiB,
    etaSeconds: 7,
    progress: 0.3,
    walking: false,
  });
  tracker.jobs([{ ...job, state: JobState.Succeeded, finishedAtMs: 4000 }]);
  t.like(tracker.snapshot(4000).jobs[0], { state: "succeeded", progress: 1, etaSeconds: null });
});

const MiB = 1024 ** 2;

test("the chart's scale follows the data: a 10 MiB/s job fills it, the 7.5 GiB/s ceiling is marked off scale", (t) => {
  const tracker = new ThroughputTracker();
  tracker.heartbeat(hb("w", "vm", 0), 0);
  tracker.heartbeat(hb("w", "vm", 50 * MiB), 5000);
  const slow = tracker.snapshot(5000);
  t.is(slow.bytesPerSecond, 10 * MiB);
  t.false(slow.chart.ceilingOnScale);
  t.true(slow.chart.topBytesPerSecond >= 10 * MiB);
  t.true(slow.chart.topBytesPerSecond <= 20 * MiB, "the 10 MiB/s line is at least half the height");
  // Near the ceiling the scale holds the ceiling line.
  tracker.heartbeat(hb("w", "vm", 50 * MiB + 35 * GiB), 10_000);
  const fast = tracker.snapshot(10_000);
  t.true(fast.chart.ceilingOnScale);
  t.true(fast.chart.topBytesPerSecond > 7.5 * GiB);
});

test("job rows carry their first error messages, not only a count", (t) => {
  const tracker = new ThroughputTracker();
  const job = newJobStatus(
    newJobSpec({ jobId: "export-2", kind: JobKind.Export, root: Buffer.from("/src") }),
    { published: 1 },
  );
  job.export.errors = 2;
  job.errorSamples = [
    {
      path: Buffer.from("a/b"),
      operation: "transfer",
      code: "EACCES",
      message: "open: permission denied",
      retryable: false,
    },
    {
      path: Buffer.from("c"),
      operation: "name",
      code: "InvalidBlobName",
      message: "c: not a blob path",
      retryable: false,
    },
  ];
  tracker.jobs([job], 1000);
  const [view] = tracker.snapshot(1000).jobs;
  t.deepEqual(view!.errorMessages, [
    "transfer a/b: EACCES open: permission denied",
    "name c: InvalidBlobName not a blob path",
  ]);
});

// Issue 16 item 1: the job row moved only when a whole batch ended; the work of the items in
// flight (in the record's inFlight counters) counts as it happens.
test("a running job's row includes the work of its items in flight", (t) => {
  const tracker = new ThroughputTracker();
  const job = newJobStatus(
    newJobSpec({ jobId: "export-2", kind: JobKind.Export, root: Buffer.from("/src") }),
    { published: 2 },
  );
  job.export.bytesFound = 2 * GiB;
  job.export.filesFound = 2128;
  job.updatedAtMs = 1000;
  job.inFlight = {
    ...emptyInFlightCounters(),
    items: 4,
    export: { ...emptyExportCounters(), filesExported: 80, bytesExported: GiB / 2 },
  };
  tracker.jobs([job], 1000);
  t.like(tracker.snapshot(1000).jobs[0], {
    bytesDone: GiB / 2,
    filesDone: 80,
    progress: 0.25,
  });
});
