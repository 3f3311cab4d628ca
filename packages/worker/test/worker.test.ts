import test from "ava";
import { JobStore, connectBus, ensureTopology, jetstream, sealHeaders } from "@hsmfleet/bus";
import {
  JobKind,
  JobState,
  RESULTS_STREAM,
  WORK_STREAM,
  encodeWalkShard,
  newJobSpec,
  newJobStatus,
  rootWalkShard,
  subjects,
} from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { Worker, resolveWorkerOptions } from "../src/index.js";

const job = (jobId: string, root: string, state: JobState): JobStatus =>
  newJobStatus(
    newJobSpec({ jobId, kind: JobKind.Scan, root: Buffer.from(root), batchMaxEntries: 100 }),
    { state, published: 1 },
  );

test("options resolve to documented defaults", (t) => {
  const o = resolveWorkerOptions({ nc: {} as never, vmName: "vm7" });
  t.like(o, {
    vmName: "vm7",
    concurrency: 16,
    readBatchSize: 4096,
    heartbeatIntervalMs: 5000,
    shutdownGraceMs: 30_000,
  });
  t.regex(o.workerId, new RegExp(`^vm7-${process.pid}-[0-9a-f]{6}$`));
});

test("items of a cancelled job are dropped without work; a live job's shard is reported once", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jobs, jsm } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  const records = [
    job("dead", dir.path, JobState.Cancelled),
    job("live", dir.path, JobState.Running),
  ];
  for (const r of records) await store.create(r);
  const js = jetstream(nc);
  for (const r of records) {
    const jobId = r.spec.jobId;
    const shard = rootWalkShard(jobId);
    const data = encodeWalkShard(shard);
    // Sealed with the job's key, as a coordinator publishes it (workers refuse unsealed items).
    await js.publish(subjects.walk(jobId), data, {
      msgID: shard.shardId,
      headers: sealHeaders(r.spec.itemKey, subjects.walk(jobId), data),
    });
  }
  const worker = await Worker.create({ nc, workerId: "w-test" });
  const running = worker.run();
  const deadline = Date.now() + 10_000;
  while ((await jsm.streams.info(WORK_STREAM)).state.messages > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await worker.shutdown();
  await running;
  t.is((await jsm.streams.info(WORK_STREAM)).state.messages, 0, "both items left the work queue");
  const results = await jsm.streams.info(RESULTS_STREAM, { subjects_filter: "hsmfleet.result.>" });
  t.deepEqual(results.state.subjects, { [subjects.itemResult("live")]: 1 });
  t.is(worker.stats.itemsDone, 1);
});

test("a process's workers follow the live jobs with one watch of the job records, not one per worker and kind (each replayed the whole job history)", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jobs, jsm } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  for (let i = 0; i < 20; i++) await store.create(job(`old-${i}`, dir.path, JobState.Succeeded));
  const kvStream = `KV_${(await jobs.status()).bucket}`;
  const watches = async () => {
    let n = 0;
    for await (const _ of jsm.consumers.list(kvStream)) n++;
    return n;
  };
  // Two in-process workers, as `hsmfleet scan` runs on 2 CPUs; each runs restore, sync and
  // autoimport pullers that follow the live jobs.
  const workers = await Promise.all(
    ["w-a", "w-b"].map((workerId) => Worker.create({ nc, workerId })),
  );
  const running = workers.map((w) => w.run());
  // Wait until the watches stop appearing (they are made within milliseconds of run()).
  let seen = -1;
  let stableSince = Date.now();
  const deadline = Date.now() + 30_000;
  for (;;) {
    const n = await watches();
    if (n !== seen) {
      seen = n;
      stableSince = Date.now();
    } else if (n > 0 && Date.now() - stableSince >= 1500) break;
    if (Date.now() > deadline) t.fail(`the watch count did not settle: last ${n}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  t.is(seen, 1, `ordered consumers on ${kvStream}`);
  await Promise.all(workers.map((w) => w.shutdown()));
  await Promise.all(running);
});
