// `hsmfleet autoimport` as a service: an initial scan, then a burst of events through the Service
// Bus STAND-IN; kill -9 mid-burst, restart, SIGTERM: every blob ends imported exactly as a full
// import makes it, and the Service Bus key never shows in the output.
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ServiceBusMessage } from "@azure/service-bus";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runImportJob } from "@hsmfleet/coordinator";
import { tempDir } from "@hsmfleet/testkit";
import { putWithEvent } from "./blob-writes.js";
import {
  exitOf,
  spawnCli,
  startBus,
  startServiceBus,
  startStorage,
  startWorkers,
  waitFor,
} from "./helpers.js";

/** Files (all named *.txt here) under `dir`. */
const countFiles = async (dir: string): Promise<number> =>
  (await readdir(dir, { recursive: true })).filter((n) => n.endsWith(".txt")).length;

test("kill -9 of the service mid-burst: after a restart every event is applied once; SIGTERM stops it cleanly; the key is never printed", async (t) => {
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const { sb, client } = await startServiceBus(t);
  sb.createQueue("events", { lockDurationMs: 5000 });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("burst");
  await container.create();
  // Before the service starts: found by the initial scan.
  await container
    .getBlockBlobClient("before/old.txt")
    .upload("old", 3, { metadata: { permissions: "0640" } });

  const target = join(tmp.path, "target");
  await mkdir(target);
  const args = [
    "--nats",
    server.url,
    "--storage",
    azurite.connectionString,
    "--workers",
    "1",
    "autoimport",
    target,
    "--container",
    "burst",
    "--events",
    "events",
    "--enable-deletions",
    "--json",
  ];
  const env = {
    HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
    HSMFLEET_LOG_LEVEL: "info",
  };
  let output = "";
  const start = () => {
    const child = spawnCli(args, { env });
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    return child;
  };
  let child = start();
  await waitFor("the initial scan", async () => (await countFiles(target)) === 1, 60_000);

  const n = 300;
  const messages: ServiceBusMessage[] = [];
  for (let i = 0; i < n; i++) {
    const name = `d${i % 10}/f${i}.txt`;
    const e = await putWithEvent(container, name, `file ${i}`, 1000 + i, {
      metadata: { owner: "1000", permissions: "0644" },
      schema: i % 2 ? "cloudevents" : "eventgrid",
    });
    messages.push({ body: e, messageId: String(e.id) });
  }
  const sender = client.createSender("events");
  for (let i = 0; i < messages.length; i += 50)
    await sender.sendMessages(messages.slice(i, i + 50));
  await sender.close();

  await waitFor("part of the burst", async () => (await countFiles(target)) > 20, 60_000);
  child.kill("SIGKILL");
  await exitOf(child);
  const appliedBeforeKill = await countFiles(target);
  t.true(
    sb.entity("events")!.count > 0,
    `messages left after the kill (${appliedBeforeKill} files applied)`,
  );

  child = start();
  await waitFor("the whole burst", () => sb.entity("events")!.count === 0, 120_000).catch(
    (err: Error) => {
      throw new Error(
        `${err.message} (${sb.entity("events")!.count} messages left); service output:\n${output.slice(-3000)}`,
      );
    },
  );
  child.kill("SIGTERM");
  const exit = await exitOf(child);
  t.is(exit.code, 0, output.slice(-2000));
  const statusLine = output
    .split("\n")
    .filter((l) => l.includes('"messagesConsumed"'))
    .pop();
  const status = JSON.parse(statusLine ?? "{}") as Record<string, unknown>;
  t.is(status.state, "Disabled");
  t.truthy(status.lastTimeFullySynchronized);
  t.is(status.totalErrors, 0);
  const names = (await readdir(target, { recursive: true })).sort();
  t.deepEqual(
    names.filter((x) => !/^(before|d\d)(\/(old|f\d+)\.txt)?$/.test(x)),
    [],
    "nothing but the blobs' files and directories",
  );
  t.is(await countFiles(target), n + 1);
  t.false(output.includes(sb.key), "the Service Bus key never appears in the output or logs");
  t.true(output.includes(`sb://127.0.0.1:${sb.port}`), "the endpoint is named");

  await startWorkers(t, server.url, 1, undefined, { storage });
  const full = join(tmp.path, "full");
  await mkdir(full);
  const summary = await runImportJob({ nc, target: full, container: "burst", storage });
  t.is(summary.importedFiles, n + 1);
  t.deepEqual(
    (await readdir(target, { recursive: true })).sort(),
    (await readdir(full, { recursive: true })).sort(),
  );
});
