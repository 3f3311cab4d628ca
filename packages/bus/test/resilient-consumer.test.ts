/**
 * The hang behind the flaky cluster test, made deterministic: a client whose server dies while its
 * ordered pull consumer lives on that same server. nats.js reconnects to another node, then asks
 * for the dead consumer's info until it answers — it never does — and watches no heartbeats
 * meanwhile: the pull waits for ever. ResilientConsumer notices the silence and opens a new one.
 */
import test from "ava";
import {
  AckPolicy,
  DeliverPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
} from "@nats-io/jetstream";
import type { Consumer, JsMsg } from "@nats-io/jetstream";
import { startNatsCluster, startNatsServer } from "@hsmfleet/testkit";
import { connectBus } from "../src/connection.js";
import { withJetStreamRetry } from "../src/jetstream-retry.js";
import { ResilientConsumer } from "../src/resilient-consumer.js";

const STREAM = "resilient-test";

const waitUntil = async (what: string, ok: () => boolean | Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

test("an ordered consumer on the client's own server, which is killed: opened again elsewhere, nothing skipped or repeated", async (t) => {
  t.timeout(300_000);
  const cluster = await startNatsCluster({ size: 3 });
  t.teardown(() => cluster.stop());
  const nc = await connectBus({ servers: cluster.urls });
  t.teardown(() => nc.close());
  // The cluster answers JetStream requests once it has elected a meta leader.
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  await withJetStreamRetry(
    "create the test stream",
    () =>
      jsm.streams.add({
        name: STREAM,
        subjects: [`${STREAM}.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        num_replicas: 3,
      }),
    { deadlineMs: 60_000 },
  );
  const js = jetstream(nc);
  const publish = (i: number) =>
    withJetStreamRetry(`publish ${i}`, () =>
      js.publish(`${STREAM}.x`, new TextEncoder().encode(String(i)), { msgID: `m${i}` }),
    );
  for (let i = 1; i <= 5; i++) await publish(i);

  const home = nc.info?.server_name ?? "";
  const victim = cluster.nodes.find((n) => n.url.endsWith(`:${nc.getServer().split(":").pop()}`));
  if (victim === undefined) throw new Error(`the client's server ${nc.getServer()} is no node`);

  // The first consumer is placed on the client's own server (placement is random: try until so).
  let lastSeq = 0;
  let opens = 0;
  const open = async (): Promise<Consumer> => {
    opens += 1;
    for (;;) {
      const c = await withJetStreamRetry("create the ordered consumer", () =>
        js.consumers.get(STREAM, {
          ...(lastSeq > 0
            ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: lastSeq + 1 }
            : { deliver_policy: DeliverPolicy.All }),
        }),
      );
      if (opens > 1) return c;
      const leader = (await c.info(true)).cluster?.leader;
      if (leader === home) return c;
      await c.delete().catch(() => undefined);
    }
  };
  const lost: string[] = [];
  const messages = new ResilientConsumer({
    open,
    consume: { expires: 4000 },
    onLost: (why) => lost.push(why),
  });
  const seen: number[] = [];
  const reading = (async () => {
    for await (const m of messages as AsyncIterable<JsMsg>) {
      lastSeq = m.seq;
      seen.push(Number(m.string()));
    }
  })();
  await waitUntil("the first five messages", () => seen.length >= 5, 30_000);

  victim.kill("SIGKILL");
  t.log(`killed ${home}, the client's server and its consumer's`);
  for (let i = 6; i <= 10; i++) await publish(i);
  await waitUntil("the five published after the kill", () => seen.length >= 10, 120_000);
  messages.close();
  await reading;
  t.log(`re-opened ${messages.reopens} time(s): ${lost.join("; ")}`);
  t.deepEqual(
    seen,
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    "every message once, in order, across the loss",
  );
  t.true(messages.reopens >= 1, "the consumer was opened again");
});

test("a durable that stays healthy is never re-opened, however long the caller works on a message", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: [`${STREAM}.>`] });
  await jsm.consumers.add(STREAM, { durable_name: "d", ack_policy: AckPolicy.Explicit });
  const js = jetstream(nc);
  for (let i = 1; i <= 3; i++) await js.publish(`${STREAM}.x`, new TextEncoder().encode(String(i)));
  const messages = new ResilientConsumer({
    open: () => js.consumers.get(STREAM, "d"),
    consume: { max_messages: 1, expires: 2000 },
    silenceMs: 2500,
  });
  const seen: number[] = [];
  for await (const m of messages) {
    seen.push(Number(m.string()));
    // Longer than silenceMs: the caller is busy, nothing was asked from the server.
    await new Promise((r) => setTimeout(r, 4000));
    m.ack();
    if (seen.length === 3) messages.close();
  }
  t.deepEqual(seen, [1, 2, 3]);
  t.is(messages.reopens, 0);
});
