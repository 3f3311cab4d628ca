import test from "ava";
import { connectBus, ensureTopology, jetstream } from "@hsmfleet/bus";
import { TRANSFER_CONSUMER, WALK_CONSUMER, WORK_STREAM, subjects } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { WorkBacklog } from "../src/walk/work-backlog.js";

const JOB = "export-backlog1";

test("the walk backpressure counts a job's queued transfer batches after acks in any order (issue 22: the count read 0 and the WORK stream grew past the bound)", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  await ensureTopology(nc, {});
  const js = jetstream(nc);

  // 600 transfer batches of ~50 KB (several file-store blocks) and 200 walk shards of the job.
  const batch = new Uint8Array(50_000);
  for (let i = 0; i < 600; i++) {
    await js.publish(subjects.transfer(JOB), batch, { msgID: `b${i}` });
    if (i % 3 === 0) await js.publish(subjects.walk(JOB), new Uint8Array(30), { msgID: `w${i}` });
  }
  // Workers take and finish 100 batches, not in stream order (work-queue retention drops them).
  const consumer = await js.consumers.get(WORK_STREAM, TRANSFER_CONSUMER);
  const taken = [];
  for await (const m of await consumer.fetch({ max_messages: 100, expires: 5000 })) {
    taken.push(m);
    if (taken.length === 100) break;
  }
  t.is(taken.length, 100);
  for (let k = 0; k < 100; k += 2) taken[99 - k]!.ack();
  for (let k = 1; k < 100; k += 2) taken[99 - k]!.ack();
  // And 30 walk shards; then the walk publishes 80 more batches.
  const walks = await js.consumers.get(WORK_STREAM, WALK_CONSUMER);
  let shards = 0;
  for await (const m of await walks.fetch({ max_messages: 30, expires: 5000 })) {
    m.ack();
    if (++shards === 30) break;
  }
  for (let i = 600; i < 680; i++)
    await js.publish(subjects.transfer(JOB), batch, { msgID: `b${i}` });
  await nc.flush();
  await new Promise((r) => setTimeout(r, 300));

  // 580 queued: a bound of 400 makes a walk wait; a bound of 1,000 does not.
  const stop = new AbortController();
  const held = new WorkBacklog({ nc, maxQueuedBatches: 400, signal: stop.signal, pollMs: 50 });
  let admitted = false;
  const waiting = held.admit(JOB).then(() => (admitted = true));
  await new Promise((r) => setTimeout(r, 1000));
  t.false(admitted, "a walk publishes past the bound: the job's queued batches were not counted");
  t.is(held.stats.waits, 1);
  t.is(held.stats.failedReads, 0);
  stop.abort();
  await waiting;

  const free = new WorkBacklog({
    nc,
    maxQueuedBatches: 1000,
    signal: new AbortController().signal,
  });
  await free.admit(JOB);
  t.is(free.stats.waits, 0);
  t.is(free.stats.failedReads, 0);
});
