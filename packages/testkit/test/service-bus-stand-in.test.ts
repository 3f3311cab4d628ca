// Fidelity of the Service Bus STAND-IN, checked with the real @azure/service-bus client against
// the SDK's documented behaviour (peek-lock, settlement, delivery counts, dead-lettering, lock
// renewal and expiry, duplicate detection, topics, batches, auth).
import { createHmac } from "node:crypto";
import test from "ava";
import rhea from "rhea";
import type { EventContext } from "rhea";
import { ServiceBusClient, isServiceBusError } from "@azure/service-bus";
import type { ServiceBusReceivedMessage } from "@azure/service-bus";
import { startServiceBusStandIn } from "../src/index.js";
import type { ServiceBusStandIn } from "../src/index.js";

const withStandIn = async (
  t: { teardown: (fn: () => Promise<void>) => void },
  setup: (sb: ServiceBusStandIn) => void,
): Promise<{ sb: ServiceBusStandIn; client: ServiceBusClient }> => {
  const sb = await startServiceBusStandIn();
  setup(sb);
  const client = new ServiceBusClient(sb.connectionString, {
    retryOptions: { maxRetries: 1, timeoutInMs: 5000 },
  });
  t.teardown(async () => {
    await client.close();
    await sb.stop();
  });
  return { sb, client };
};

const receiveOne = async (
  client: ServiceBusClient,
  queue: string,
  options: { subQueueType?: "deadLetter" } = {},
): Promise<ServiceBusReceivedMessage[]> => {
  const receiver = client.createReceiver(queue, options);
  try {
    return await receiver.receiveMessages(10, { maxWaitTimeInMs: 1500 });
  } finally {
    await receiver.close();
  }
};

test("send, peek-lock receive, complete: properties round-trip, deliveryCount 0, then the queue is empty", async (t) => {
  const { sb, client } = await withStandIn(t, (s) => s.createQueue("q"));
  const sender = client.createSender("q");
  await sender.sendMessages({
    body: { hello: "world" },
    messageId: "m-1",
    applicationProperties: { kind: "test", n: 7 },
  });
  const receiver = client.createReceiver("q");
  const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
  t.truthy(m);
  t.deepEqual(m!.body, { hello: "world" });
  t.is(m!.messageId, "m-1");
  t.deepEqual(m!.applicationProperties, { kind: "test", n: 7 });
  t.is(m!.deliveryCount, 0);
  t.is(m!.sequenceNumber?.toNumber(), 1);
  t.true(m!.lockedUntilUtc!.getTime() > Date.now());
  t.regex(m!.lockToken!, /^[0-9a-f-]{36}$/);
  t.is(sb.entity("q")!.count, 1, "locked, not yet removed");
  await receiver.completeMessage(m!);
  t.is(sb.entity("q")!.count, 0);
  t.deepEqual(await receiver.peekMessages(10), []);
  await t.throwsAsync(() => receiver.completeMessage(m!), { message: /settled|lock/i });
  await receiver.close();
  await sender.close();
  t.true(
    sb.counters.putTokens >= 2,
    "the SDK sent put-tokens to $cbs and the stand-in checked them",
  );
});

test("abandon redelivers with deliveryCount + 1; past maxDeliveryCount the message is dead-lettered", async (t) => {
  const { client } = await withStandIn(t, (s) => s.createQueue("q", { maxDeliveryCount: 3 }));
  await client.createSender("q").sendMessages({ body: "x", messageId: "a" });
  const receiver = client.createReceiver("q");
  const counts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
    counts.push(m!.deliveryCount!);
    await receiver.abandonMessage(m!);
  }
  t.deepEqual(counts, [0, 1, 2]);
  t.deepEqual(await receiver.receiveMessages(1, { maxWaitTimeInMs: 500 }), []);
  const [dead] = await receiveOne(client, "q", { subQueueType: "deadLetter" });
  t.is(dead!.messageId, "a");
  t.is(dead!.deadLetterReason, "MaxDeliveryCountExceeded");
  t.regex(dead!.deadLetterErrorDescription!, /3 delivery attempts/);
  await receiver.close();
});

test("deadLetterMessage keeps reason and description on the $DeadLetterQueue sub-entity", async (t) => {
  const { sb, client } = await withStandIn(t, (s) => s.createQueue("q"));
  await client.createSender("q").sendMessages({ body: "bad", messageId: "b" });
  const receiver = client.createReceiver("q");
  const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
  await receiver.deadLetterMessage(m!, {
    deadLetterReason: "InvalidSpec",
    deadLetterErrorDescription: "kind: unknown",
  });
  await receiver.close();
  t.is(sb.entity("q")!.count, 0);
  t.is(sb.entity("q/$deadletterqueue")!.count, 1, "sub-entity names are case-insensitive");
  const [dead] = await receiveOne(client, "q", { subQueueType: "deadLetter" });
  t.is(dead!.body, "bad");
  t.is(dead!.deadLetterReason, "InvalidSpec");
  t.is(dead!.deadLetterErrorDescription, "kind: unknown");
});

test("renewMessageLock extends the lock through $management; an expired lock redelivers and the old token is lost", async (t) => {
  // Wide margins so a loaded machine cannot move a step across a lock boundary: the lock is 6 s,
  // renewed 3 s in; the "still locked" look comes 1.5 s after the first lock would have ended and
  // 1.5 s before the renewed one ends.
  const { client } = await withStandIn(t, (s) => s.createQueue("q", { lockDurationMs: 6000 }));
  await client.createSender("q").sendMessages({ body: "slow", messageId: "s" });
  // The SDK renews locks by itself unless told not to: here the test renews by hand.
  const receiver = client.createReceiver("q", { maxAutoLockRenewalDurationInMs: 0 });
  const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 3000 });
  const first = m!.lockedUntilUtc!.getTime();
  await new Promise((r) => setTimeout(r, 3000));
  const renewed = await receiver.renewMessageLock(m!);
  t.true(renewed.getTime() > first + 2000, "the lock moved on");
  await new Promise((r) => setTimeout(r, Math.max(0, first + 1500 - Date.now())));
  t.deepEqual(
    await receiver.receiveMessages(1, { maxWaitTimeInMs: 200 }),
    [],
    "still locked after the first duration",
  );
  await new Promise((r) => setTimeout(r, Math.max(0, renewed.getTime() + 200 - Date.now())));
  const [again] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 5000 });
  t.is(again!.messageId, "s");
  t.is(again!.deliveryCount, 1, "an expired lock counts as a delivery");
  await receiver.completeMessage(again!);
  const error = await t.throwsAsync(() => receiver.completeMessage(m!));
  t.true(isServiceBusError(error) && error.code === "MessageLockLost", String(error));
  await t.throwsAsync(() => receiver.renewMessageLock(m!), { message: /lock/i });
  await receiver.close();
});

test("duplicate detection drops a message id seen in the window; without it both are kept", async (t) => {
  const { sb, client } = await withStandIn(t, (s) => {
    s.createQueue("dedup", { requiresDuplicateDetection: true });
    s.createQueue("plain");
  });
  for (const q of ["dedup", "plain"]) {
    const sender = client.createSender(q);
    await sender.sendMessages({ body: 1, messageId: "same" });
    await sender.sendMessages({ body: 2, messageId: "same" });
    await sender.sendMessages({ body: 3, messageId: "other" });
    await sender.close();
  }
  t.is(sb.entity("dedup")!.count, 2);
  t.is(sb.entity("plain")!.count, 3);
  t.deepEqual(
    (await receiveOne(client, "dedup")).map((m) => m.body as number),
    [1, 3],
  );
  t.is(sb.counters.duplicatesDropped, 1);
});

test("a topic copies each message to every subscription; batches arrive whole and in order", async (t) => {
  const { client } = await withStandIn(t, (s) => {
    s.createTopic("events");
    s.createSubscription("events", "a");
    s.createSubscription("events", "b");
  });
  const sender = client.createSender("events");
  const batch = await sender.createMessageBatch();
  for (let i = 0; i < 5; i++) t.true(batch.tryAddMessage({ body: { i }, messageId: `e${i}` }));
  await sender.sendMessages(batch);
  await sender.sendMessages([{ body: { i: 5 } }, { body: { i: 6 } }]);
  for (const sub of ["a", "b"]) {
    const receiver = client.createReceiver("events", sub);
    const got: number[] = [];
    while (got.length < 7) {
      const ms = await receiver.receiveMessages(10, { maxWaitTimeInMs: 2000 });
      if (ms.length === 0) break;
      for (const m of ms) {
        got.push((m.body as { i: number }).i);
        await receiver.completeMessage(m);
      }
    }
    t.deepEqual(got, [0, 1, 2, 3, 4, 5, 6], `subscription ${sub}`);
    await receiver.close();
  }
});

test("subscribe() streams a burst in peek-lock; receiveAndDelete removes on delivery", async (t) => {
  const { sb, client } = await withStandIn(t, (s) => {
    s.createQueue("burst");
    s.createQueue("rad");
  });
  const sender = client.createSender("burst");
  const n = 500;
  let batch = await sender.createMessageBatch();
  for (let i = 0; i < n; i++) {
    if (!batch.tryAddMessage({ body: i })) {
      await sender.sendMessages(batch);
      batch = await sender.createMessageBatch();
      batch.tryAddMessage({ body: i });
    }
  }
  await sender.sendMessages(batch);
  const receiver = client.createReceiver("burst");
  const seen = new Set<number>();
  await new Promise<void>((resolve, reject) => {
    const sub = receiver.subscribe(
      {
        processMessage: async (m) => {
          seen.add(m.body as number);
          await receiver.completeMessage(m);
          if (seen.size === n) void sub.close().then(resolve, reject);
        },
        processError: (args) => {
          reject(args.error);
          return Promise.resolve();
        },
      },
      { autoCompleteMessages: false, maxConcurrentCalls: 16 },
    );
  });
  t.is(seen.size, n);
  // Up to 16 handlers run at once: every message was seen before the last completions were
  // settled, so the queue empties as those dispositions arrive (at most a few seconds here).
  for (let i = 0; i < 200 && sb.entity("burst")!.count > 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  t.is(sb.entity("burst")!.count, 0);
  await client.createSender("rad").sendMessages({ body: "gone" });
  const rad = client.createReceiver("rad", { receiveMode: "receiveAndDelete" });
  const [m] = await rad.receiveMessages(1, { maxWaitTimeInMs: 3000 });
  t.is(m!.body, "gone");
  t.is(sb.entity("rad")!.count, 0);
  await rad.close();
});

test("a wrong key is refused at $cbs; an unknown entity is MessagingEntityNotFound", async (t) => {
  const sb = await startServiceBusStandIn();
  sb.createQueue("q");
  t.teardown(() => sb.stop());
  const wrong = new ServiceBusClient(
    sb.connectionString.replace(/SharedAccessKey=[^;]+/, "SharedAccessKey=bm90LXRoZS1rZXk="),
    {
      retryOptions: { maxRetries: 0, timeoutInMs: 5000 },
    },
  );
  const bad = await t.throwsAsync(() => wrong.createSender("q").sendMessages({ body: 1 }));
  t.true(isServiceBusError(bad) && bad.code === "UnauthorizedAccess", String(bad));
  t.true(sb.counters.refusedTokens >= 1);
  await wrong.close();
  t.is(sb.entity("q")!.count, 0);
  const client = new ServiceBusClient(sb.connectionString, {
    retryOptions: { maxRetries: 0, timeoutInMs: 5000 },
  });
  const missing = await t.throwsAsync(() => client.createSender("nope").sendMessages({ body: 1 }));
  t.true(isServiceBusError(missing) && missing.code === "MessagingEntityNotFound", String(missing));
  await client.close();
});

test("one receiver link takes more than 2,048 peek-lock deliveries (settled deliveries free their session slots)", async (t) => {
  const { sb, client } = await withStandIn(t, (s) => s.createQueue("many"));
  const sender = client.createSender("many");
  const n = 3000;
  for (let i = 0; i < n;) {
    const batch = await sender.createMessageBatch();
    while (i < n && batch.tryAddMessage({ body: i })) i++;
    await sender.sendMessages(batch);
  }
  const receiver = client.createReceiver("many");
  let done = 0;
  while (done < n) {
    const ms = await receiver.receiveMessages(256, { maxWaitTimeInMs: 3000 });
    if (ms.length === 0) break;
    await Promise.all(ms.map((m) => receiver.completeMessage(m)));
    done += ms.length;
  }
  t.is(done, n);
  t.is(sb.entity("many")!.count, 0);
  await receiver.close();
});

test("a drain that finds no credit left is answered (AMQP 1.0 2.6.7): the receiver gets its drained flow", async (t) => {
  // The SDK drains after each receive; if its last credited messages are still in flight, the
  // stand-in sees the drain at zero credit. Unanswered, the SDK closed its link after 200 ms and the
  // messages in flight on it stayed locked until their lock expired (a ~40 s stall in the bench).
  const sb = await startServiceBusStandIn();
  t.teardown(() => sb.stop());
  const queue = sb.createQueue("q");
  for (let i = 0; i < 3; i++) queue.enqueue({ body: `m${i}` });
  const container = rhea.create_container({ id: "drain-test" });
  const conn = container.connect({
    host: "127.0.0.1",
    port: sb.port,
    username: "x",
    password: "y",
    reconnect: false,
  });
  t.teardown(() => conn.close());
  await new Promise((resolve) => conn.once("connection_open", resolve));
  // Claims-based security: a put-token for the queue's audience (a SAS token with the key).
  const audience = `sb://127.0.0.1:${sb.port}/q`;
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const sig = createHmac("sha256", sb.key)
    .update(`${encodeURIComponent(audience)}\n${expiry}`)
    .digest("base64");
  const token = `SharedAccessSignature sr=${encodeURIComponent(audience)}&sig=${encodeURIComponent(sig)}&se=${expiry}&skn=${sb.keyName}`;
  const replies = conn.open_receiver({
    source: { address: "$cbs" },
    target: { address: "cbs-reply" },
  });
  const cbs = conn.open_sender({ target: { address: "$cbs" } });
  const reply = new Promise<rhea.Message>((resolve) =>
    replies.once("message", (ctx: EventContext) => resolve(ctx.message!)),
  );
  await new Promise((resolve) => cbs.once("sendable", resolve));
  cbs.send({
    message_id: "1",
    reply_to: "cbs-reply",
    application_properties: {
      operation: "put-token",
      type: "servicebus.windows.net:sastoken",
      name: audience,
      expiration: expiry,
    },
    body: token,
  });
  const status = (await reply).application_properties as Record<string, unknown>;
  t.is(Number(status["status-code"] ?? status["statusCode"]), 202);
  // Peek-lock receiver, no automatic credit: 3 credits, 3 messages, then a drain at zero credit.
  const receiver = conn.open_receiver({
    source: { address: "q" },
    credit_window: 0,
    autoaccept: false,
  });
  let received = 0;
  const all = new Promise<void>((resolve) =>
    receiver.on("message", () => {
      if (++received === 3) resolve();
    }),
  );
  await new Promise((resolve) => receiver.once("receiver_open", resolve));
  receiver.add_credit(3);
  await all;
  const drained = new Promise<boolean>((resolve) => {
    receiver.once("receiver_drained", () => resolve(true));
    setTimeout(() => resolve(false), 10_000).unref();
  });
  receiver.drain_credit();
  t.true(await drained, "no answer to a drain at zero credit within 10 s");
  t.is(queue.lockedCount, 3);
});

test("a receiver's credit bounds what is locked: receiveMessages(10) of 100 locks 10, the rest stay available", async (t) => {
  // Service Bus locks a message when it delivers it, within the link's credit. The stand-in used to
  // take messages while rhea's session buffer had room (2,048), whatever the credit: messages were
  // locked though not delivered, and a drain (credit used up) stranded them on the link, locked,
  // until their lock expired.
  const { sb, client } = await withStandIn(t, (s) =>
    s.createQueue("q", { lockDurationMs: 60_000 }),
  );
  const queue = sb.entity("q")!;
  for (let i = 0; i < 100; i++) queue.enqueue({ body: i, message_id: `m${i}` });
  const receiver = client.createReceiver("q");
  const first = await receiver.receiveMessages(10, { maxWaitTimeInMs: 3000 });
  t.is(first.length, 10);
  await new Promise((r) => setTimeout(r, 200));
  t.is(queue.lockedCount, 10, "only the delivered messages are locked");
  // Every other message comes on later receives, on its first delivery (none stranded, locked).
  const seen = new Set(first.map((m) => m.body as number));
  await Promise.all(first.map((m) => receiver.completeMessage(m)));
  const deadline = Date.now() + 20_000;
  while (seen.size < 100 && Date.now() < deadline) {
    const ms = await receiver.receiveMessages(7, { maxWaitTimeInMs: 1000 });
    for (const m of ms) {
      t.is(m.deliveryCount, 0, `message ${String(m.body)} was delivered before`);
      seen.add(m.body as number);
    }
    await Promise.all(ms.map((m) => receiver.completeMessage(m)));
  }
  t.is(
    seen.size,
    100,
    `received ${seen.size} of 100; locked in the stand-in: ${queue.lockedCount}`,
  );
  t.is(queue.count, 0);
  await receiver.close();
});
