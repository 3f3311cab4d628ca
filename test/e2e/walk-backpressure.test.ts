import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import test from "ava";
import type { ExecutionContext } from "ava";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, jetstreamManager } from "@hsmfleet/bus";
import { runExportJob } from "@hsmfleet/coordinator";
import { WORK_STREAM, subjects } from "@hsmfleet/protocol";
import { SyntheticNamespace } from "@hsmfleet/worker";
import { tempDir } from "@hsmfleet/testkit";
import { startBus, startStorage, startWorkers } from "./helpers.js";

// A synthetic tree exported into the null target by slow workers (each file "takes" 5 ms, one at a
// time): the walk is far faster than the transfers, so without a bound it queues every batch.
const TREE = { files: 3000, filesPerDirectory: 100, fanOut: 4 };
const BATCH = 10;
const BATCHES = TREE.files / BATCH;
const WORKERS = 2;
const WALK_SLOTS = 2;
const LIMIT = 5;

/** Runs one export and samples how many of its transfer batches the WORK stream holds. */
const exportSampled = async (
  t: ExecutionContext,
  maxQueuedBatches: number,
): Promise<{ peak: number; waits: number }> => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const root = join(dir.path, "root");
  await mkdir(root);
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const workers = await startWorkers(t, server.url, WORKERS, undefined, {
    storage,
    concurrency: WALK_SLOTS,
    transferConcurrency: 1,
    fileConcurrency: 1,
    maxQueuedBatches,
    bench: { namespace: new SyntheticNamespace(TREE), nullTarget: true, nullTargetFileMs: 5 },
  });
  const jobId = `backpressure-${maxQueuedBatches}`;
  const subject = subjects.transfer(jobId);
  const sampler = await connectBus({ servers: server.url });
  t.teardown(() => sampler.close());
  const jsm = await jetstreamManager(sampler);
  let peak = 0;
  let done = false;
  const sampling = (async () => {
    while (!done) {
      try {
        const info = await jsm.streams.info(WORK_STREAM, { subjects_filter: subject });
        peak = Math.max(peak, info.state.subjects?.[subject] ?? 0);
      } catch {
        // the stream is not there yet
      }
      await sleep(20);
    }
  })();
  const summary = await runExportJob({
    nc,
    root,
    container: "backpressure",
    storage,
    jobId,
    batchMaxEntries: BATCH,
  }).finally(() => (done = true));
  await sampling;
  t.like(summary, {
    state: "succeeded",
    errors: 0,
    filesExported: TREE.files,
    directoriesExported: TREE.files / TREE.filesPerDirectory - 1,
  });
  return { peak, waits: workers.reduce((s, w) => s + w.backlog.stats.waits, 0) };
};

test("walk backpressure: a job's queued transfer batches stay within maxQueuedBatches (+ the fleet's walk slots) with slow workers", async (t) => {
  const { peak, waits } = await exportSampled(t, LIMIT);
  t.log(`peak ${peak} queued batches of ${BATCHES}; ${waits} publishes waited`);
  t.true(
    peak <= LIMIT + WORKERS * WALK_SLOTS,
    `peak ${peak} queued transfer batches, bound ${LIMIT} + ${WORKERS * WALK_SLOTS} walk slots`,
  );
  t.true(waits > 0, "the walks waited for the transfers");
});

test("without a bound (maxQueuedBatches 0) the same walk runs ahead of the slow transfers", async (t) => {
  const { peak, waits } = await exportSampled(t, 0);
  t.log(`peak ${peak} queued batches of ${BATCHES}`);
  // What the bounded run must not do: most of the job queued at once.
  t.true(peak > BATCHES / 4, `peak ${peak}`);
  t.is(waits, 0);
});
