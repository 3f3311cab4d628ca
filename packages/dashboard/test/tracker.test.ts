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
