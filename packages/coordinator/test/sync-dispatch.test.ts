import test from "ava";
import { AckPolicy } from "@nats-io/jetstream";
import {
  connectBus,
  ensureTopology,
  jetstream,
  jetstreamManager,
  sealHeaders,
} from "@hsmfleet/bus";
import type { JsMsg, NatsConnection } from "@hsmfleet/bus";
import {
  WORK_STREAM,
  decodeSyncBatch,
  emptySyncCounters,
  encodeSyncResult,
  syncSubjects,
} from "@hsmfleet/protocol";
import type { SyncBatch, SyncOp } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { PhaseDispatcher } from "../src/sync/sync-dispatch.js";

const KEY = new Uint8Array(32).fill(7);

/** A worker stand-in: a pull consumer on the job's sync subject of the real work stream. */
const standInWorker = async (nc: NatsConnection, jobId: string) => {
  const jsm = await jetstreamManager(nc);
  const name = `standin-${jobId}`;
  await jsm.consumers.add(WORK_STREAM, {
    durable_name: name,
    filter_subject: syncSubjects.batch(jobId),
    ack_policy: AckPolicy.Explicit,
    ack_wait: 60_000_000_000,
  });
  const consumer = await jetstream(nc).consumers.get(WORK_STREAM, name);
  const next = async (): Promise<{ msg: JsMsg; batch: SyncBatch }> => {
    for (;;) {
      const msg = await consumer.next({ expires: 1_000 });
      if (msg) return { msg, batch: decodeSyncBatch(msg.data) };
    }
  };
  /** Publishes the item's result (sealed), then acknowledges it, as a worker does. */
  const answer = async ({ msg, batch }: { msg: JsMsg; batch: SyncBatch }): Promise<void> => {
    const subject = syncSubjects.result(jobId);
    const data = encodeSyncResult({
      jobId,
      batchId: batch.batchId,
      workerId: "stand-in",
      counters: { ...emptySyncCounters(), filesExported: batch.ops.length },
      requeue: [],
      failures: [],
    });
    await jetstream(nc).publish(subject, data, { headers: sealHeaders(KEY, subject, data) });
    await msg.ackAck();
  };
  return { next, answer };
};

const ops = (n: number): SyncOp[] =>
  Array.from({ length: n }, (_, i) => ({ op: "upload" as const, path: Buffer.from(`f${i}`) }));

test("sync dispatch: an item a worker terminated (it left the work stream with no result) is published again at the next look-up, not after the 5-minute item timeout; an item a worker holds is not", async (t) => {
  t.timeout(60_000, "before the fix the phase waited for the 300 s item timeout");
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  await ensureTopology(nc);
  const jobId = "sync-losttest";
  const worker = await standInWorker(nc, jobId);
  const dispatcher = new PhaseDispatcher(nc, jetstream(nc), jobId, KEY, undefined, {
    lostCheckMs: 200,
    resultGraceMs: 100,
  });
  t.teardown(() => dispatcher.close());
  const abort = new AbortController();
  t.teardown(() => abort.abort());

  // 1. Terminated: gone from the stream, no result.
  const started = Date.now();
  const phase = dispatcher.run(ops(3), 100, 300_000, abort.signal);
  const first = await worker.next();
  t.regex(first.batch.batchId, /\.1$/);
  first.msg.term();
  const again = await worker.next();
  t.regex(again.batch.batchId, /\.2$/, "the same item, published again under a new id");
  t.deepEqual(
    again.batch.ops.map((o) => o.path.toString()),
    first.batch.ops.map((o) => o.path.toString()),
  );
  await worker.answer(again);
  const outcome = await phase;
  t.is(outcome.counters.filesExported, 3);
  t.true(Date.now() - started < 30_000, `${Date.now() - started} ms`);

  // 2. Held by a worker well past several look-ups (still in the stream): never published twice.
  const held = dispatcher.run(ops(2), 100, 300_000, abort.signal);
  const slow = await worker.next();
  await new Promise((r) => setTimeout(r, 1_500));
  await worker.answer(slow);
  t.is((await held).counters.filesExported, 2);
  const info = await (await jetstreamManager(nc)).consumers.info(WORK_STREAM, `standin-${jobId}`);
  t.is(info.num_pending, 0, "nothing was published again for the held item");
  t.is(info.num_ack_pending, 0);
});
