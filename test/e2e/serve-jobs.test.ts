// `hsmfleet serve --jobs`: a job spec sent to a Service Bus queue (the STAND-IN, real SDK) runs on
// the fleet, its lifecycle events arrive on a topic subscription with AMLFS state names, and the
// message is completed when the job ends (its lock renewed meanwhile); invalid specs are
// dead-lettered with the reason and start nothing.
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { decodeHsmAttrs } from "@hsmfleet/core";
import { getXattr } from "@hsmfleet/fs";
import { blobEvent, tempDir } from "@hsmfleet/testkit";
import {
  exitOf,
  runCli,
  spawnCli,
  startBus,
  startServiceBus,
  startStorage,
  waitFor,
} from "./helpers.js";

test.serial(
  "a job submitted through the queue runs and its events arrive on the topic; invalid specs are dead-lettered with a reason",
  async (t) => {
    const tmp = await tempDir();
    t.teardown(() => tmp.cleanup());
    const azurite = await startStorage(t);
    const { server } = await startBus(t);
    const { sb, client } = await startServiceBus(t);
    // A lock shorter than the job: the job's message must be kept locked by renewal, not redelivered.
    sb.createQueue("jobs", { lockDurationMs: 1500 });
    sb.createTopic("job-events");
    sb.createSubscription("job-events", "all");
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
      {
        body: { kind: "import", path: "relative/path", container: "intake" },
        messageId: "bad-path",
      },
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
      await client
        .createReceiver("job-events", "all")
        .receiveMessages(100, { maxWaitTimeInMs: 2000 })
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
  },
);

interface EventBody {
  eventType: string;
  state: string;
  name: string;
  jobId: string;
  kind: string;
  path: string;
  status: Record<string, unknown>;
}

test.serial(
  "serve runs export, archive, release and verify specs through the fleet (the CLI commands' job runners); each ends Completed on the topic",
  async (t) => {
    const tmp = await tempDir();
    t.teardown(() => tmp.cleanup());
    const azurite = await startStorage(t);
    const { server } = await startBus(t);
    const { sb, client } = await startServiceBus(t);
    sb.createQueue("jobs", { lockDurationMs: 5000 });
    sb.createTopic("job-events");
    sb.createSubscription("job-events", "all");
    const tree = join(tmp.path, "tree");
    await mkdir(join(tree, "d"), { recursive: true });
    await writeFile(join(tree, "a.txt"), "alpha data");
    await writeFile(join(tree, "d/b.txt"), "bravo data, longer");

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

    // One job at a time, in queue order.
    const sender = client.createSender("jobs");
    await sender.sendMessages([
      { body: { kind: "export", name: "exp", path: tree, container: "copy" }, messageId: "1" },
      {
        body: { kind: "archive", name: "arch", path: tree, container: "hsm-arch" },
        messageId: "2",
      },
      {
        body: { kind: "release", name: "rel", path: join(tree, "a.txt"), container: "hsm-arch" },
        messageId: "3",
      },
      { body: { kind: "verify", name: "ver", path: tree, container: "copy" }, messageId: "4" },
    ]);
    await sender.close();
    await waitFor("the queue to empty", () => sb.entity("jobs")!.count === 0, 180_000).catch(
      (err: Error) => {
        throw new Error(`${err.message}\n${output.slice(-3000)}`);
      },
    );
    child.kill("SIGTERM");
    t.is((await exitOf(child)).code, 0, output.slice(-2000));

    const dead = await client
      .createReceiver("jobs", { subQueueType: "deadLetter" })
      .receiveMessages(10, { maxWaitTimeInMs: 1000 });
    t.deepEqual(
      dead.map((m) => `${m.deadLetterReason}: ${m.deadLetterErrorDescription}`),
      [],
    );
    const events = (
      await client
        .createReceiver("job-events", "all")
        .receiveMessages(200, { maxWaitTimeInMs: 2000 })
    ).map((m) => m.body as EventBody);
    const ends = events.filter((e) => e.eventType !== "started" && e.eventType !== "progress");
    t.deepEqual(
      ends.map((e) => `${e.name} ${e.kind} ${e.eventType} ${e.state}`),
      [
        "exp export completed Completed",
        "arch archive completed Completed",
        "rel release completed Completed",
        "ver verify completed Completed",
      ],
      output.slice(-3000),
    );
    const byName = Object.fromEntries(ends.map((e) => [e.name, e]));
    t.regex(byName["arch"]!.jobId, /^archive-/);
    t.is(byName["arch"]!.status["done"], 2, "both files archived");
    t.is(byName["rel"]!.status["done"], 1);
    t.is(byName["ver"]!.status["differences"], 0);
    t.is(byName["ver"]!.status["files"], 2);
    t.is(byName["ver"]!.status["identical"], true);

    // The file system says the same: a.txt released (0xd), d/b.txt archived (0x9).
    const flags = async (rel: string) =>
      decodeHsmAttrs((await getXattr(Buffer.from(join(tree, rel)), "trusted.hsm"))!).flags;
    t.is(await flags("a.txt"), 0xd);
    t.is(await flags("d/b.txt"), 0x9);
    const archived: string[] = [];
    const arch = BlobServiceClient.fromConnectionString(
      azurite.connectionString,
    ).getContainerClient("hsm-arch");
    for await (const b of arch.listBlobsFlat()) archived.push(b.name);
    t.is(archived.length, 2, archived.join(", "));
    t.false(output.includes(sb.key), "the Service Bus key never appears in the output or logs");
  },
);

test.serial(
  "hsmfleet export --events-topic publishes the job's lifecycle events (started, progress, completed) without the key",
  async (t) => {
    const tmp = await tempDir();
    t.teardown(() => tmp.cleanup());
    const azurite = await startStorage(t);
    const { server } = await startBus(t);
    const { sb, client } = await startServiceBus(t);
    sb.createTopic("job-events");
    sb.createSubscription("job-events", "all");
    const tree = join(tmp.path, "tree");
    await mkdir(join(tree, "d"), { recursive: true });
    for (let i = 0; i < 20; i++) await writeFile(join(tree, "d", `f${i}.txt`), `file ${i}`);

    const run = await runCli(
      [
        "--nats",
        server.url,
        "--storage",
        azurite.connectionString,
        "--workers",
        "1",
        "export",
        tree,
        "--container",
        "evented",
        "--events-topic",
        "job-events",
        "--progress-interval",
        "1",
        "--json",
      ],
      {
        env: {
          HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
          HSMFLEET_LOG_LEVEL: "info",
        },
        timeoutMs: 120_000,
      },
    );
    t.is(run.code, 0, run.stderr.slice(-2000));
    const summary = JSON.parse(run.stdout) as { jobId: string; filesExported: number };
    const events = (
      await client
        .createReceiver("job-events", "all")
        .receiveMessages(100, { maxWaitTimeInMs: 2000 })
    ).map((m) => ({ ...(m.body as EventBody), subject: m.subject }));
    const types = events.map((e) => e.eventType);
    t.is(types[0], "started");
    t.is(types[types.length - 1], "completed");
    t.true(
      types.slice(1, -1).every((x) => x === "progress"),
      types.join(","),
    );
    const last = events[events.length - 1]!;
    t.like(last, { kind: "export", path: tree, state: "Completed", jobId: summary.jobId });
    t.is(last.subject, "completed", "the message subject is the event type");
    t.is(last.status["filesExported"], summary.filesExported);
    t.true(events.every((e) => e.jobId === summary.jobId));
    const all = JSON.stringify(events) + run.stdout + run.stderr;
    t.false(all.includes(sb.key), "the Service Bus key is in no event and no log line");
    t.regex(run.stderr, /lifecycle events to a topic/);
  },
);
