import test from "ava";
import { jetstreamManager } from "@nats-io/jetstream";
import {
  HSM_STREAM,
  JOBS_BUCKET,
  RESULTS_STREAM,
  WALK_CONSUMER,
  WORK_STREAM,
  hsmConsumerName,
} from "@hsmfleet/protocol";
import { JobKind, JobState, newJobSpec, newJobStatus } from "@hsmfleet/protocol";
import type { JobStatus } from "@hsmfleet/protocol";
import { startNatsServer } from "@hsmfleet/testkit";
import {
  JobStore,
  connectBus,
  ensureHsmPartitions,
  ensureTopology,
  listHsmPartitions,
  reachJetStream,
  TOPOLOGY_REUSE_MS,
} from "../src/index.js";

const status = (jobId: string, createdAtMs: number): JobStatus =>
  newJobStatus(
    newJobSpec({ jobId, kind: JobKind.Scan, root: Buffer.from("/mnt/fs"), createdAtMs }),
  );

test("topology is created once and later callers do not undo its settings", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  await ensureTopology(nc, { ackWaitMs: 1234, maxDeliver: 7, duplicateWindowMs: 60_000 });
  // A worker starting with defaults must not reset the admin's values.
  await ensureTopology(nc);
  const jsm = await jetstreamManager(nc);
  const consumer = await jsm.consumers.info(WORK_STREAM, WALK_CONSUMER);
  t.is(consumer.config.ack_wait, 1234 * 1_000_000);
  t.is(consumer.config.max_deliver, 7);
  const work = await jsm.streams.info(WORK_STREAM);
  t.is(work.config.retention, "workqueue");
  t.is(work.config.duplicate_window, 60_000 * 1_000_000);
  t.is((await jsm.streams.info(RESULTS_STREAM)).config.retention, "limits");
  // Explicit update applies new values.
  await ensureTopology(nc, { ackWaitMs: 5000, update: true });
  t.is((await jsm.consumers.info(WORK_STREAM, WALK_CONSUMER)).config.ack_wait, 5000 * 1_000_000);
  t.truthy(await jsm.streams.info(`KV_${JOBS_BUCKET}`));
});

test("job store: create refuses duplicates, list is newest first, bad ids are refused", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const store = new JobStore((await ensureTopology(nc)).jobs);
  await store.create(status("scan-a", 1000));
  await store.create(status("scan-b", 2000));
  await t.throwsAsync(store.create(status("scan-a", 3000)), {
    message: /job scan-a already exists/,
  });
  t.deepEqual(
    (await store.list()).map((s) => s.spec.jobId),
    ["scan-b", "scan-a"],
  );
  const a = await store.require("scan-a");
  a.state = JobState.Succeeded;
  await store.put(a);
  t.is((await store.require("scan-a")).state, JobState.Succeeded);
  await t.throwsAsync(store.require("scan-zzz"), { message: /no job scan-zzz/ });
  await t.throwsAsync(store.get("../etc"), { message: /invalid job id/ });
});

test("connecting to a server that is not there names it", async (t) => {
  const err = await t.throwsAsync(
    connectBus({ servers: "nats://127.0.0.1:1", timeoutMs: 1000, reconnectForever: false }),
  );
  t.regex(err.message, /cannot connect to NATS at nats:\/\/127\.0\.0\.1:1/);
});

test("HSM stream: work-queue, one ordered consumer per partition, more added on demand", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jsm, topology } = await ensureTopology(nc, { hsmPartitions: 4 });
  t.is((await jsm.streams.info(HSM_STREAM)).config.retention, "workqueue");
  t.deepEqual(await listHsmPartitions(jsm), [0, 1, 2, 3]);
  const c = await jsm.consumers.info(HSM_STREAM, hsmConsumerName(2));
  t.is(c.config.filter_subject, "hsmfleet.hsm.2");
  t.is(c.config.max_ack_pending, 1);
  await ensureHsmPartitions(jsm, 6, topology);
  t.deepEqual(await listHsmPartitions(jsm), [0, 1, 2, 3, 4, 5]);
});

test("ensureTopology run at once by many processes on a fresh server: every one succeeds (a create racing another's create is not an error)", async (t) => {
  for (let round = 0; round < 4; round++) {
    const server = await startNatsServer();
    try {
      const ncs = await Promise.all(
        Array.from({ length: 8 }, () => connectBus({ servers: server.url })),
      );
      try {
        const outcomes = await Promise.allSettled(ncs.map((nc) => ensureTopology(nc)));
        const failed = outcomes.filter((o) => o.status === "rejected");
        t.deepEqual(
          failed.map((o) => String(o.reason)),
          [],
          `round ${round}`,
        );
      } finally {
        await Promise.all(ncs.map((nc) => nc.close()));
      }
    } finally {
      await server.stop();
    }
  }
});

test("reachJetStream waits for a JetStream API that answers late (a cluster electing its meta leader) and fails at once, naming -js, on a server without JetStream", async (t) => {
  // A server without JetStream, and a stand-in responder on $JS.API.INFO that lets the first two
  // look-ups time out and answers the third: what a cluster whose meta leader was just killed does.
  const server = await startNatsServer({ jetstream: false });
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const bare = await reachJetStream(nc, 5_000, 300).then(
    () => "reached",
    (err: Error) => err.message,
  );
  t.regex(bare, /has no JetStream \(start nats-server with -js\)/);

  const responder = await connectBus({ servers: server.url });
  t.teardown(() => responder.close());
  let asked = 0;
  responder.subscribe("$JS.API.INFO", {
    callback: (_err, msg) => {
      asked += 1;
      if (asked < 3) return;
      msg.respond(
        JSON.stringify({
          type: "io.nats.jetstream.api.v1.account_info_response",
          memory: 0,
          storage: 0,
          streams: 0,
          consumers: 0,
          limits: {},
          api: { total: 0, errors: 0 },
        }),
      );
    },
  });
  await responder.flush();
  const started = Date.now();
  await reachJetStream(nc, 20_000, 500);
  t.is(asked, 3, "two look-ups timed out and were tried again");
  t.true(Date.now() - started >= 1_000);
  asked = -1_000; // never answers again within the deadline
  await t.throwsAsync(reachJetStream(nc, 1_000, 300), {
    message: /the JetStream API did not answer in \d+ tries/,
  });
});

test("ensureTopology on one connection: calls made together or just after one that succeeded share its look-ups; another connection, other settings or a later call ask the server again", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  // The JetStream API requests on the wire, seen by a second connection.
  const spy = await connectBus({ servers: server.url });
  t.teardown(() => spy.close());
  let requests = 0;
  spy.subscribe("$JS.API.>", {
    callback: () => {
      requests++;
    },
  });
  await spy.flush();
  const settle = async () => {
    await spy.flush();
    await new Promise((r) => setTimeout(r, 50));
  };
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());

  // A command's in-process workers and its job, made together.
  const together = await Promise.all([ensureTopology(nc), ensureTopology(nc), ensureTopology(nc)]);
  await settle();
  const oneRound = requests;
  t.true(oneRound >= 20, `one round of look-ups: ${oneRound} requests`);
  t.is(together[1], together[0]);
  t.is(together[2], together[0]);
  // The job's own call a moment later.
  const again = await ensureTopology(nc);
  await settle();
  t.is(requests, oneRound, "a call just after one that succeeded sends no request");
  t.is(again.jobs, together[0].jobs);

  // Other settings, or another connection: their own round.
  await ensureTopology(nc, { ackWaitMs: 45_000 });
  await settle();
  t.true(requests > oneRound, "other settings ask the server");
  const afterOther = requests;
  const other = await connectBus({ servers: server.url });
  t.teardown(() => other.close());
  await ensureTopology(other);
  await settle();
  t.true(requests > afterOther, "another connection asks the server");

  // Past the reuse window the server is asked again (a stream deleted meanwhile comes back).
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(HSM_STREAM);
  await new Promise((r) => setTimeout(r, TOPOLOGY_REUSE_MS + 100));
  await ensureTopology(nc);
  t.truthy(await jsm.streams.info(HSM_STREAM));
});

test("job store watchLive: one watch per bucket handle; a subscriber that joins late gets the live jobs' records, then every update; the watch ends with its last subscriber", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const { jobs } = await ensureTopology(nc);
  const store = new JobStore(jobs);
  const kvStream = `KV_${(await jobs.status()).bucket}`;
  const jsm = await jetstreamManager(nc);
  const watches = async () => {
    let n = 0;
    for await (const _ of jsm.consumers.list(kvStream)) n++;
    return n;
  };
  const ended = status("ended", 1);
  ended.state = JobState.Succeeded;
  await store.create(ended);
  const live = status("live", 2);
  live.state = JobState.Running;
  await store.create(live);
  const waitFor = async (what: string, ok: () => boolean) => {
    const deadline = Date.now() + 20_000;
    while (!ok()) {
      if (Date.now() > deadline) t.fail(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const first: string[] = [];
  const a = await store.watchLive((s) => first.push(`${s.spec.jobId}:${s.state}`));
  await waitFor("the first subscriber's replay", () => first.length === 2);
  t.deepEqual(first.sort(), [`ended:${JobState.Succeeded}`, `live:${JobState.Running}`]);

  // Another handle on the same bucket (another worker of the process): no second watch.
  const late: string[] = [];
  const b = await new JobStore(jobs).watchLive((s) => late.push(`${s.spec.jobId}:${s.state}`));
  t.deepEqual(late, [`live:${JobState.Running}`], "only the live job is replayed to a late one");
  t.is(await watches(), 1);

  live.state = JobState.Succeeded;
  await store.put(live);
  await waitFor("the update", () => first.length === 3 && late.length === 2);
  t.is(late[1], `live:${JobState.Succeeded}`);

  // Ended jobs are not replayed any more.
  const later: string[] = [];
  const c = await store.watchLive((s) => later.push(s.spec.jobId));
  t.deepEqual(later, []);
  for (const w of [a, b, c]) w.stop();
  // The last one gone, a new subscriber opens a new watch and sees the whole history again.
  const fresh: string[] = [];
  const d = await store.watchLive((s) => fresh.push(s.spec.jobId));
  await waitFor("the new watch's replay", () => fresh.length === 2);
  d.stop();
  t.pass();
});
