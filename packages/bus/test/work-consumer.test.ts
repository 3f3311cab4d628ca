import test from "ava";
import type { ExecutionContext } from "ava";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/transport-node";
import { startNatsServer } from "@hsmfleet/testkit";
import { connectBus, runWorkConsumer } from "../src/index.js";
import type { Redelivery } from "../src/index.js";

const ACK_WAIT_MS = 1000;

/** A real server with one stream and one durable pull consumer whose ack wait is 1 s. */
const setup = async (t: ExecutionContext, messages: number) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "W", subjects: ["w.>"] });
  await jsm.consumers.add("W", {
    durable_name: "c",
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(ACK_WAIT_MS),
    max_deliver: 5,
  });
  const js = jetstream(nc);
  for (let i = 0; i < messages; i++) await js.publish(`w.${i}`, new TextEncoder().encode(`${i}`));
  const info = async () => jsm.consumers.info("W", "c");
  return { nc, info };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs the consumer until `done` resolves, then stops it. */
const runUntil = async (
  nc: NatsConnection,
  done: Promise<unknown>,
  options: Omit<Parameters<typeof runWorkConsumer>[1], "stream" | "consumer" | "signal">,
) => {
  const abort = new AbortController();
  const running = runWorkConsumer(nc, {
    stream: "W",
    consumer: "c",
    signal: abort.signal,
    ...options,
  });
  await done;
  abort.abort();
  await running;
};

test("pulls no more messages than it has handler slots; held messages outlive the ack wait", async (t) => {
  const total = 8;
  const { nc, info } = await setup(t, total);
  const handled: string[] = [];
  let running = 0;
  let maxRunning = 0;
  let maxAckPending = 0;
  let finish: () => void = () => undefined;
  const allDone = new Promise<void>((r) => (finish = r));
  const sampler = setInterval(() => {
    void info().then((i) => (maxAckPending = Math.max(maxAckPending, i.num_ack_pending)));
  }, 100);
  t.teardown(() => clearInterval(sampler));
  await runUntil(nc, allDone, {
    concurrency: 2,
    // Each handler takes longer than the ack wait (kept alive by the loop, not by the handler).
    handle: async (msg: JsMsg) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await sleep(ACK_WAIT_MS * 1.3);
      running--;
      handled.push(new TextDecoder().decode(msg.data));
      await msg.ackAck();
      if (handled.length === total) finish();
    },
  });
  clearInterval(sampler);
  t.is(handled.length, total);
  t.is(new Set(handled).size, total, "each message handled once");
  t.is(maxRunning, 2);
  t.true(maxAckPending <= 2, `the server saw at most 2 unacknowledged (saw ${maxAckPending})`);
  const end = await info();
  t.is(end.delivered.consumer_seq, total, "no redelivery");
  t.is(end.num_ack_pending, 0);
});

test("a redelivery of a message still held is reported and not started twice; the holder's ack settles it", async (t) => {
  const { nc, info } = await setup(t, 1);
  const seen: Redelivery[] = [];
  let starts = 0;
  let redelivered: () => void = () => undefined;
  const copy = new Promise<void>((r) => (redelivered = r));
  let acked: () => void = () => undefined;
  const done = new Promise<void>((r) => (acked = r));
  await runUntil(nc, done, {
    concurrency: 2,
    // A keep-alive far beyond the ack wait stands for a process stalled past it.
    keepAliveMs: 60_000,
    onRedelivery: (_msg, r) => {
      seen.push(r);
      redelivered();
    },
    handle: async (msg) => {
      starts++;
      await copy;
      msg.ack(); // the first delivery's ack, after the copy arrived
      acked();
    },
  });
  t.is(starts, 1, "the copy was not started");
  t.deepEqual(seen, [{ held: true }]);
  await sleep(ACK_WAIT_MS * 2);
  const end = await info();
  t.is(end.num_ack_pending, 0, "the first delivery's ack settled the message");
  t.is(end.num_redelivered, 0);
  t.is(end.delivered.consumer_seq, 2, "delivered twice, not again after the ack");
});

test("a redelivery after this process handed the message back carries the error", async (t) => {
  const { nc } = await setup(t, 1);
  const seen: Redelivery[] = [];
  const errors: unknown[] = [];
  let acked: () => void = () => undefined;
  const done = new Promise<void>((r) => (acked = r));
  await runUntil(nc, done, {
    onRedelivery: (_msg, r) => seen.push(r),
    onError: (err) => errors.push(err),
    handle: (msg) => {
      if (msg.info.deliveryCount === 1) return Promise.reject(new Error("busy, try again"));
      msg.ack();
      acked();
      return Promise.resolve();
    },
  });
  t.is(errors.length, 1);
  t.is(seen.length, 1);
  t.false(seen[0]!.held);
  t.is((seen[0]!.previousError as Error).message, "busy, try again");
});

test("with prefetch, a message waiting for a slot is kept alive too", async (t) => {
  const total = 3;
  const { nc, info } = await setup(t, total);
  const handled: string[] = [];
  let maxAckPending = 0;
  let finish: () => void = () => undefined;
  const allDone = new Promise<void>((r) => (finish = r));
  await runUntil(nc, allDone, {
    concurrency: 1,
    prefetch: 1,
    handle: async (msg: JsMsg) => {
      maxAckPending = Math.max(maxAckPending, (await info()).num_ack_pending);
      await sleep(ACK_WAIT_MS * 1.5);
      handled.push(new TextDecoder().decode(msg.data));
      await msg.ackAck();
      if (handled.length === total) finish();
    },
  });
  t.deepEqual(handled, ["0", "1", "2"]);
  t.true(maxAckPending <= 2, `held at most one running and one waiting (saw ${maxAckPending})`);
  t.is((await info()).delivered.consumer_seq, total, "no redelivery");
});

test("a handler that throws at once, or throws a terminal error, never wedges a slot: the message is handed back or terminated", async (t) => {
  const { nc, info } = await setup(t, 3);
  const seen = new Map<string, number>();
  const errors: string[] = [];
  let others: () => void = () => undefined;
  const othersDone = new Promise<void>((resolve) => (others = resolve));
  await runUntil(nc, othersDone, {
    // One slot: a wedged message would stop everything behind it.
    concurrency: 1,
    handle: (msg: JsMsg) => {
      const n = new TextDecoder().decode(msg.data);
      seen.set(n, (seen.get(n) ?? 0) + 1);
      // Message 0 throws synchronously (like a decoder before the first await) until its third
      // delivery, message 1 is poison: a terminal error, never to come back.
      if (n === "0" && (seen.get(n) ?? 0) < 3) throw new Error("sync throw");
      if (n === "1") throw Object.assign(new Error("undecodable"), { terminal: true as const });
      msg.ack();
      if (seen.has("0") && seen.has("2") && (seen.get("0") ?? 0) >= 3) others();
      return Promise.resolve();
    },
    onError: (err) => errors.push((err as Error).message),
  });
  t.is(seen.get("0"), 3, "the synchronously throwing message was handed back and retried");
  t.is(seen.get("1"), 1, "the terminal one was delivered once and terminated");
  t.true(errors.includes("undecodable"));
  await sleep(ACK_WAIT_MS * 1.5);
  const state = await info();
  t.is(state.num_ack_pending, 0, "nothing is held");
  t.is(state.num_pending, 0, "nothing comes back");
});
