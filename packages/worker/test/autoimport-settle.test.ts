// Settling the autoimport intake's messages with the real @azure/service-bus client against the
// Service Bus STAND-IN.
import { getEventListeners } from "node:events";
import test from "ava";
import { ServiceBusClient } from "@azure/service-bus";
import { startServiceBusStandIn } from "@hsmfleet/testkit";
import { receiveRound } from "../src/autoimport/autoimport-receive.js";
import { settle } from "../src/autoimport/autoimport-round.js";

test("a message received on a receiver link that was since replaced is settled by lock token at once (the SDK would settle it on the new link and hang 60 s)", async (t) => {
  const sb = await startServiceBusStandIn();
  const client = new ServiceBusClient(sb.connectionString);
  t.teardown(async () => {
    await client.close();
    await sb.stop();
  });
  const queue = sb.createQueue("q", { lockDurationMs: 3000 });
  for (let i = 0; i < 3; i++) queue.enqueue({ body: i, message_id: `m${i}` });
  const receiver = client.createReceiver("q");
  const first = await receiver.receiveMessages(3, { maxWaitTimeInMs: 3000 });
  t.is(first.length, 3);
  // Service Bus detaches the link (idle, entity moved); the SDK attaches a new one, under the same
  // link name, on its next receive. Its settlement of `first` would look the link up by that name,
  // find the new one open and send the old deliveries' dispositions nowhere.
  t.is(sb.detachReceivers("q"), 1);
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(await receiver.receiveMessages(1, { maxWaitTimeInMs: 500 }), []);
  const logs: string[] = [];
  const ctx = { name: "t", log: (_level: "info" | "warn", message: string) => logs.push(message) };
  const settled = Promise.all(
    first.map((m) => settle(ctx, "complete", m, () => receiver.completeMessage(m))),
  );
  const outcome = await Promise.race([
    settled,
    new Promise<"hung">((r) => setTimeout(() => r("hung"), 15_000).unref()),
  ]);
  t.deepEqual(outcome, [true, true, true], "completed at once");
  t.true(
    logs.some((l) => /link it came on is closed/.test(l)),
    logs.join("\n"),
  );
  t.is(queue.count, 0, "the three messages are gone from the queue");
  await receiver.close();
});

test("receives of a long-running service leave no listener on its stop signal (the SDK leaks one per drained receive)", async (t) => {
  const sb = await startServiceBusStandIn();
  const client = new ServiceBusClient(sb.connectionString);
  t.teardown(async () => {
    await client.close();
    await sb.stop();
  });
  const queue = sb.createQueue("q");
  const receiver = client.createReceiver("q");
  const stop = new AbortController();
  const before = getEventListeners(stop.signal, "abort").length;
  // Each receive that ends with credit left drains the link; the SDK's drain adds an abort
  // listener to the receive's signal and does not remove it when the drain is answered.
  for (let i = 0; i < 6; i++) {
    queue.enqueue({ body: i, message_id: `m${i}` });
    const ms = await receiveRound(receiver, 5, 300, stop.signal);
    await Promise.all(ms.map((m) => receiver.completeMessage(m)));
  }
  t.is(getEventListeners(stop.signal, "abort").length, before);
  await receiver.close();
});
