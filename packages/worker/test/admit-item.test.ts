import test from "ava";
import {
  JobStore,
  connectBus,
  ensureJobConsumer,
  ensureTopology,
  jetstream,
  sealHeaders,
} from "@hsmfleet/bus";
import {
  JobKind,
  WORK_STREAM,
  encodeSyncBatch,
  newJobSpec,
  newJobStatus,
  syncSubjects,
} from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { SYNC_BATCH_RULES } from "../src/item-checks.js";
import { resolveWorkerOptions } from "../src/options.js";
import { admitItem } from "../src/runtime/admit-item.js";
import { JobCache } from "../src/runtime/job-cache.js";

test("an item sealed with the key of a job record re-created since it was cached is admitted (a restarted sync service's items)", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jsm, jobs } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const jobId = "sync-restarted";
  const record = () =>
    newJobStatus(
      newJobSpec({ jobId, kind: JobKind.Sync, root: Buffer.from("/r"), container: "c" }),
    );
  const first = record();
  await store.put(first);
  // A long TTL: the cached record of the first run is certainly still cached below.
  const cache = new JobCache(store, 600_000);
  t.deepEqual((await cache.get(jobId))?.spec.itemKey, first.spec.itemKey);
  // The service restarts: a fresh record with a fresh item key, and its first item.
  const second = record();
  t.notDeepEqual(second.spec.itemKey, first.spec.itemKey);
  await store.put(second);
  await ensureJobConsumer(jsm, {
    name: syncSubjects.consumer(jobId),
    filterSubject: syncSubjects.batch(jobId),
    maxAckPending: 10,
    ackWaitMs: 30_000,
    maxDeliver: 3,
  });
  const js = jetstream(nc);
  const subject = syncSubjects.batch(jobId);
  const data = encodeSyncBatch({
    jobId,
    batchId: `${jobId}.b.0.1`,
    ops: [{ op: "upload", path: Buffer.from("a") }],
  });
  await js.publish(subject, data, {
    msgID: "b0",
    headers: sealHeaders(second.spec.itemKey, subject, data),
  });
  const consumer = await js.consumers.get(WORK_STREAM, syncSubjects.consumer(jobId));
  const msg = await consumer.next({ expires: 10_000 });
  if (msg === null) return t.fail("the item was not delivered");
  const options = resolveWorkerOptions({ nc, vmName: "t" });
  const admitted = await admitItem({ js, options, jobs: cache }, msg, SYNC_BATCH_RULES);
  t.is(admitted?.batchId, `${jobId}.b.0.1`, "refused with the stale record's key");
  msg.ack();
});

test("an item with no valid seal is still refused after the record is read again", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jsm, jobs } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const jobId = "sync-forged";
  const status = newJobStatus(
    newJobSpec({ jobId, kind: JobKind.Sync, root: Buffer.from("/r"), container: "c" }),
  );
  await store.put(status);
  const cache = new JobCache(store, 600_000);
  await cache.get(jobId);
  await ensureJobConsumer(jsm, {
    name: syncSubjects.consumer(jobId),
    filterSubject: syncSubjects.batch(jobId),
    maxAckPending: 10,
    ackWaitMs: 30_000,
    maxDeliver: 3,
  });
  const js = jetstream(nc);
  const subject = syncSubjects.batch(jobId);
  const data = encodeSyncBatch({ jobId, batchId: `${jobId}.b.0.1`, ops: [] });
  await js.publish(subject, data, {
    msgID: "f0",
    headers: sealHeaders(new Uint8Array(32).fill(7), subject, data),
  });
  const consumer = await js.consumers.get(WORK_STREAM, syncSubjects.consumer(jobId));
  const msg = await consumer.next({ expires: 10_000 });
  if (msg === null) return t.fail("the item was not delivered");
  const options = resolveWorkerOptions({ nc, vmName: "t" });
  t.is(await admitItem({ js, options, jobs: cache }, msg, SYNC_BATCH_RULES), undefined);
});
