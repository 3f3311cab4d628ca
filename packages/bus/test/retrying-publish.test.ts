import test from "ava";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { DependencyError } from "@hsmfleet/core";
import { startNatsServer } from "@hsmfleet/testkit";
import { connectBus } from "../src/connection.js";
import { retryingPublishes } from "../src/retrying-publish.js";

test("a publish that no stream answers yet (a leader being elected) is retried until one does", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const retries: string[] = [];
  const js = retryingPublishes(jetstream(nc), {
    onRetry: (subject, attempt, err) =>
      retries.push(`${subject} ${attempt} ${err instanceof Error ? err.message : String(err)}`),
  });
  const published = js.publish("late.x", new TextEncoder().encode("hello"), { msgID: "m1" });
  await new Promise((r) => setTimeout(r, 1000));
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "LATE", subjects: ["late.>"] });
  const ack = await published;
  t.is(ack.stream, "LATE");
  t.true(retries.length >= 1, "the first tries found no stream");
  t.regex(retries[0]!, /^late\.x 1 /);
  t.is((await jsm.streams.info("LATE")).state.messages, 1, "stored once");
  // Anything but publish is the client's own.
  t.is(typeof js.jetstreamManager, "function");
});

test("a publish that no stream ever answers fails with a named error at the deadline", async (t) => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url });
  t.teardown(() => nc.close());
  const js = retryingPublishes(jetstream(nc), { deadlineMs: 1500 });
  const err = await t.throwsAsync(js.publish("nowhere.x", new Uint8Array(0), { msgID: "m1" }));
  t.true(err instanceof DependencyError);
  t.regex(err.message, /could not publish to nowhere\.x: JetStream did not answer/);
});
