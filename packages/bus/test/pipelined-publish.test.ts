import test from "ava";
import { DiscardPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startNatsServer } from "@hsmfleet/testkit";
import { connectBus } from "../src/connection.js";
import { PipelinedPublishError, publishPipelined } from "../src/pipelined-publish.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

test("a pipelined publish stores every message once, in order, and a repeat stores nothing more", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "PIPE", subjects: ["pipe.>"] });
  const messages = Array.from({ length: 2_000 }, (_, i) => ({
    subject: `pipe.${i % 3}`,
    data: enc.encode(`m${i}`),
    msgId: `id-${i}`,
  }));
  await publishPipelined(nc, messages, { window: 64 });
  t.is((await jsm.streams.info("PIPE")).state.messages, 2_000);
  // Half of them again (a restart re-publishing what it applied): duplicates, nothing stored.
  await publishPipelined(nc, messages.slice(0, 1_000));
  t.is((await jsm.streams.info("PIPE")).state.messages, 2_000);
  const consumer = await jetstream(nc).consumers.get("PIPE");
  const got: string[] = [];
  for (let i = 0; i < 2_000; i++) {
    const m = await consumer.next({ expires: 5_000 });
    if (m === null) break;
    got.push(dec.decode(m.data));
  }
  t.deepEqual(
    got,
    messages.map((_, i) => `m${i}`),
    "stored in the order given",
  );
});

test("a pipelined publish that no stream takes fails naming the message, subject and cause", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const err = await t.throwsAsync(
    publishPipelined(nc, [
      { subject: "nowhere.a", data: enc.encode("x"), msgId: "first" },
      { subject: "nowhere.b", data: enc.encode("y"), msgId: "second" },
    ]),
  );
  t.true(err instanceof PipelinedPublishError);
  t.regex(err.message, /^JetStream publish of first to nowhere\.a: 503/);
});

test("a stream that refuses a message (full, discard new) fails the publish at that message", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({
    name: "SMALL",
    subjects: ["small.>"],
    max_msgs: 5,
    discard: DiscardPolicy.New,
  });
  const messages = Array.from({ length: 20 }, (_, i) => ({
    subject: "small.x",
    data: enc.encode(`m${i}`),
    msgId: `s-${i}`,
  }));
  const err = await t.throwsAsync(publishPipelined(nc, messages, { window: 4 }));
  t.true(err instanceof PipelinedPublishError);
  t.is((err as PipelinedPublishError).msgId, "s-5");
  t.regex(err.message, /maximum messages exceeded/);
  t.is((await jsm.streams.info("SMALL")).state.messages, 5);
});
