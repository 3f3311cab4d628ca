import test from "ava";
import type { ExecutionContext } from "ava";
import { connectBus, ensureTopology, jetstream, jetstreamManager } from "@hsmfleet/bus";
import {
  RESULTS_STREAM,
  WALK_CONSUMER,
  WORK_STREAM,
  decodeItemResult,
  encodeWalkShard,
  subjects,
} from "@hsmfleet/protocol";
import type { JobStatus, WalkShard } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import { resolveWorkerOptions } from "../src/options.js";
import { claimAttempt } from "../src/walk/claim-attempt.js";
import { ShardRun } from "../src/walk/shard-run.js";
import { reportFailedItem } from "../src/walk/walk-shard.js";
import type { WalkContext } from "../src/walk/shard-run.js";

const JOB = "import-claim1";

/** A real nats-server with the hsmfleet topology and a connection to it, stopped with the test. */
const startBus = async (t: ExecutionContext) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  await ensureTopology(nc, {});
  return { server, nc, js: jetstream(nc) };
};

/** The next walk shard the walk consumer delivers. */
const takeWalkShard = async (js: ReturnType<typeof jetstream>) => {
  const consumer = await js.consumers.get(WORK_STREAM, WALK_CONSUMER);
  const m = await consumer.next({ expires: 5000 });
  if (m === null) throw new Error("no walk shard delivered");
  return m;
};

test("claimAttempt: the lowest attempt at or above the delivery count that no run of the item claimed", async (t) => {
  const { nc, js } = await startBus(t);
  const claim = (item: string, count: number) => claimAttempt(js, nc, JOB, item, count);
  t.is(await claim("s1", 1), 1, "a first delivery");
  t.is(await claim("s1", 1), 2, "delivered again, the server saying 1");
  t.is(await claim("s1", 3), 3, "the server's count when it is free");
  t.is(await claim("s1", 2), 4, "above every number taken");
  t.is(await claim("s2", 1), 1, "per item");
  t.is(await claim("s3", 0), 1, "a count of 0 is taken as 1");
  // The markers are deleted once stored; their ids still count as taken.
  const jsm = await jetstreamManager(nc);
  t.is((await jsm.streams.info(WORK_STREAM)).state.messages, 0, "no marker left in the stream");
});

test("a walk shard delivered again with a delivery count of 1 (its consumer lost its state, as nats-server before 2.10.15 can do when a worker dies) runs as attempt 2, not as a first delivery", async (t) => {
  const { server, nc, js } = await startBus(t);
  const shard: WalkShard = { jobId: JOB, paths: [Buffer.from("d")], depth: 1, shardId: "shard-d" };
  await js.publish(subjects.walk(JOB), encodeWalkShard(shard), { msgID: shard.shardId });
  const take = () => takeWalkShard(js);
  const ctx: WalkContext = {
    js,
    options: resolveWorkerOptions({ nc, workerId: "w1" }),
    maxDeliver: 5,
    ackWaitMs: 30_000,
    onEntries: () => undefined,
  };
  const job = { spec: { jobId: JOB, itemKey: new Uint8Array(32) } } as unknown as JobStatus;

  const first = await take();
  t.is(first.info.deliveryCount, 1);
  const run1 = new ShardRun(ctx, first, shard, job);
  t.false(await run1.resume(), "a first run walks");
  run1.stop();
  t.is(run1.attempt, 1);

  // The consumer forgets the delivery (made again here): the unacknowledged shard comes back
  // from the server as a first delivery, as the dead worker's shard did in the import-resume test.
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.delete(WORK_STREAM, WALK_CONSUMER);
  const nc2 = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc2.close());
  await ensureTopology(nc2, {});
  const again = await take();
  t.is(again.info.streamSequence, first.info.streamSequence, "the same message");
  t.is(again.info.deliveryCount, 1, "which the server calls a first delivery");
  const run2 = new ShardRun(ctx, again, shard, job);
  t.false(await run2.resume(), "attempt 1 left no final result: walked again");
  run2.stop();
  t.is(run2.attempt, 2, "the run knows an earlier one was there");
});

test("a walk shard that fails on a delivery the server counts as its first is reported, though a later run's replay stored an empty notice under that attempt's result id", async (t) => {
  const { server, nc, js } = await startBus(t);
  const job2 = "import-claim2";
  const shard: WalkShard = { jobId: job2, paths: [Buffer.from("e")], depth: 1, shardId: "shard-e" };
  await js.publish(subjects.walk(job2), encodeWalkShard(shard), { msgID: shard.shardId });
  const take = () => takeWalkShard(js);
  const options = resolveWorkerOptions({ nc, workerId: "w1" });
  const ctx: WalkContext = {
    js,
    options,
    maxDeliver: 5,
    ackWaitMs: 30_000,
    onEntries: () => undefined,
  };
  const job = { spec: { jobId: job2, itemKey: new Uint8Array(32) } } as unknown as JobStatus;

  const run1 = new ShardRun(ctx, await take(), shard, job);
  t.false(await run1.resume());
  run1.stop();
  // The dead worker's shard comes back counted as a first delivery; its run claims attempt 2 and
  // probes attempt 1's declaration ids, which stores an empty notice under `<shard>.r`.
  const jsm = await jetstreamManager(nc);
  await jsm.consumers.delete(WORK_STREAM, WALK_CONSUMER);
  // A new connection: ensureTopology shares one connection's recent look-ups.
  const nc2 = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc2.close());
  await ensureTopology(nc2, {});
  const again = await take();
  t.is(again.info.deliveryCount, 1);
  const run2 = new ShardRun(ctx, again, shard, job);
  t.false(await run2.resume());
  run2.stop();
  t.is(run2.attempt, 2);

  // That run gives up (e.g. Blob kept failing): its failure must reach the job's results.
  await reportFailedItem(
    { js, options },
    again,
    { jobId: job2, itemId: shard.shardId, kind: "walk", path: Buffer.from("e") },
    new Error("storage unavailable"),
  );
  // An ordered consumer over the whole stream (nats-server 2.9 has no filter_subjects).
  const results = await js.consumers.get(RESULTS_STREAM);
  const failed = [];
  for (;;) {
    const m = await results.next({ expires: 1000 });
    if (m === null) break;
    const r = decodeItemResult(m.data);
    if (r.jobId === job2 && r.itemId === shard.shardId && r.failed) failed.push(r);
  }
  t.is(failed.length, 1, "the shard's failed result is stored");
  t.regex(failed[0]!.errors[0]!.message, /storage unavailable/);
});
