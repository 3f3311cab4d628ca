// `hsmfleet serve --jobs`: a job spec sent to a Service Bus queue (the STAND-IN, real SDK) runs on
// the fleet, its lifecycle events arrive on a topic subscription with AMLFS state names, and the
// message is completed when the job ends (its lock renewed meanwhile); invalid specs are
// dead-lettered with the reason and start nothing.
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { ServiceBusClient } from "@azure/service-bus";
import { BlobServiceClient } from "@azure/storage-blob";
import { blobEvent, startServiceBusStandIn, tempDir } from "@hsmfleet/testkit";
import { exitOf, spawnCli, startBus, startStorage, waitFor } from "./helpers.js";

test("a job submitted through the queue runs and its events arrive on the topic; invalid specs are dead-lettered with a reason", async (t) => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const { server } = await startBus(t);
  const sb = await startServiceBusStandIn();
  // A lock shorter than the job: the job's message must be kept locked by renewal, not redelivered.
  sb.createQueue("jobs", { lockDurationMs: 1500 });
  sb.createTopic("job-events");
  sb.createSubscription("job-events", "all");
  const client = new ServiceBusClient(sb.connectionString);
  t.teardown(async () => {
    await client.close();
    await sb.stop();
  });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("intake");
  await container.create();
  for (const name of ["a.txt", "d/b.txt", "d/e/c.txt"])
    await container.getBlockBlobClient(name).upload(name, name.length);
  const target = join(tmp.path, "target");
  await mkdir(target);

  let output = "";
  const child = spawnCli(
    [
      "--nats",
      server.url,
      "--storage",
      azurite.connectionString,
      "--workers",
      "1",
      "serve",
      "--jobs",
      "jobs",
      "--events-topic",
      "job-events",
      "--progress-interval",
      "1",
    ],
    {
      env: {
        HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
        HSMFLEET_LOG_LEVEL: "info",
      },
    },
  );
  child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (output += d.toString()));

  const sender = client.createSender("jobs");
  await sender.sendMessages([
    {
      body: { kind: "import", name: "nightly", path: target, container: "intake" },
      messageId: "job-1",
    },
    { body: { kind: "import", path: "relative/path", container: "intake" }, messageId: "bad-path" },
    { body: { kind: "copy", path: "/x" }, messageId: "bad-kind" },
    {
      body: blobEvent({ type: "BlobCreated", container: "intake", blob: "x", sequencer: 1 }),
      messageId: "not-a-spec",
    },
  ]);
  await sender.close();

  await waitFor("the queue to empty", () => sb.entity("jobs")!.count === 0, 120_000);
  child.kill("SIGTERM");
  const exit = await exitOf(child);
  t.is(exit.code, 0, output.slice(-2000));

  t.deepEqual((await readdir(target, { recursive: true })).sort(), [
    "a.txt",
    "d",
    "d/b.txt",
    "d/e",
    "d/e/c.txt",
  ]);

  const dead = await client
    .createReceiver("jobs", { subQueueType: "deadLetter" })
    .receiveMessages(10, { maxWaitTimeInMs: 2000 });
  const reasons: Record<string, string> = {};
  for (const m of dead)
    reasons[String(m.messageId)] = `${m.deadLetterReason}: ${m.deadLetterErrorDescription}`;
  t.deepEqual(Object.keys(reasons).sort(), ["bad-kind", "bad-path", "not-a-spec"]);
  t.regex(reasons["bad-path"] ?? "", /^InvalidJobSpec: .*field path must be absolute/);
  t.regex(reasons["bad-kind"] ?? "", /^InvalidJobSpec: .*field kind must be one of/);
  t.regex(reasons["not-a-spec"] ?? "", /^InvalidJobSpec: .*unknown field/);

  const events = (
    await client.createReceiver("job-events", "all").receiveMessages(100, { maxWaitTimeInMs: 2000 })
  ).map(
    (m) =>
      m.body as {
        eventType: string;
        state: string;
        name: string;
        jobId: string;
        status: Record<string, unknown>;
      },
  );
  const types = events.map((e) => e.eventType);
  t.is(types[0], "started");
  t.is(
    types.filter((x) => x === "started").length,
    1,
    "the job ran once: its lock was renewed, not lost",
  );
  t.is(types[types.length - 1], "completed");
  const last = events[events.length - 1]!;
  t.like(last, { name: "nightly", state: "Completed" });
  t.regex(last.jobId, /^import-/);
  t.is(last.status.totalBlobsImported, 5);
  t.true(events.every((e) => e.name === "nightly"));
  t.false(output.includes(sb.key), "the Service Bus key never appears in the output or logs");
});
