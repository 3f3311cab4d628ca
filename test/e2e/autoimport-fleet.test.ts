// `hsmfleet autoimport` as the intake of the fleet: a burst of Blob Storage events through the
// Service Bus STAND-IN is applied by two `hsmfleet worker` processes (real nats-server, real
// Azurite); one worker is killed with SIGKILL mid-burst and its items go to the other; the target
// equals a full import of the container. A forged (unsealed) work item is never applied.
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import type { ChildProcess } from "node:child_process";
import type { ServiceBusMessage } from "@azure/service-bus";
import { BlobServiceClient } from "@azure/storage-blob";
import { jetstream } from "@nats-io/jetstream";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runImportJob } from "@hsmfleet/coordinator";
import {
  RESULTS_STREAM,
  autoImportSubjects,
  decodeAutoImportResult,
  encodeAutoImportBatch,
} from "@hsmfleet/protocol";
import { blobEvent, tempDir } from "@hsmfleet/testkit";
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

const countFiles = async (dir: string): Promise<number> =>
  (await readdir(dir, { recursive: true })).filter((n) => n.endsWith(".txt")).length;

test("a burst is applied by two worker processes, one killed with SIGKILL mid-burst; the tree equals a full import; a forged item is refused", async (t) => {
  // Worker 0 applies most of the burst alone, then its unacked items wait out their ack wait (30 s).
  t.timeout(10 * 60_000);
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const azurite = await startStorage(t);
  const storage = parseStorageTarget(azurite.connectionString)!;
  const { server, nc } = await startBus(t);
  const { sb, client } = await startServiceBus(t);
  sb.createQueue("events", { lockDurationMs: 10_000 });
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) c.kill("SIGKILL");
  });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("fleet");
  await container.create();

  const env = {
    HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
    HSMFLEET_LOG_LEVEL: "info",
  };
  const outputs: string[] = [];
  const start = (args: string[], extraEnv: Record<string, string> = {}) => {
    const i = outputs.push("") - 1;
    const child = spawnCli(["--nats", server.url, "--storage", azurite.connectionString, ...args], {
      env: { ...env, ...extraEnv },
    });
    child.stdout!.on("data", (d: Buffer) => (outputs[i] += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (outputs[i] += d.toString()));
    children.push(child);
    return child;
  };
  const tail = () => outputs.map((o, i) => `--- process ${i}:\n${o.slice(-1500)}`).join("\n");
  // Worker 0 alone first; it kills itself (SIGKILL, test seam) when it is about to apply a change
  // of d10/f590.txt, late in the burst, with items of it unacknowledged.
  const w0 = start(["worker", "--worker-id", "fleet-w0"], {
    HSMFLEET_TEST_SEAM: "autoimport-change-start:d10/f590.txt",
  });
  const target = join(tmp.path, "target");
  await mkdir(target);
  const service = start([
    "--workers",
    "0",
    "autoimport",
    target,
    "--container",
    "fleet",
    "--events",
    "events",
    "--enable-deletions",
    "--no-initial-scan",
    "--json",
  ]);

  // A burst: 600 files in 20 directories, 30 of them deleted again (their BlobDeleted after their
  // BlobCreated, sequencer order), and 50 duplicate deliveries.
  const n = 600;
  const messages: ServiceBusMessage[] = [];
  let sequencer = 5000;
  for (let i = 0; i < n; i++) {
    const name = `d${i % 20}/f${i}.txt`;
    const e = await putWithEvent(container, name, `file ${i}`, sequencer++, {
      metadata: { owner: "1000", permissions: "0644" },
      schema: i % 2 ? "cloudevents" : "eventgrid",
    });
    messages.push({ body: e, messageId: String(e.id) });
  }
  for (let i = 0; i < n; i += 20) {
    const name = `d${i % 20}/f${i}.txt`;
    await container.getBlockBlobClient(name).delete();
    const e = blobEvent({
      type: "BlobDeleted",
      container: "fleet",
      blob: name,
      sequencer: sequencer++,
    });
    messages.push({ body: e, messageId: String(e.id) });
  }
  messages.push(...messages.slice(100, 150).map((m) => ({ ...m })));
  const sender = client.createSender("events");
  for (let i = 0; i < messages.length; i += 50)
    await sender.sendMessages(messages.slice(i, i + 50));
  await sender.close();

  // A forged item for the service's job (no seal): refused by the workers, never applied.
  await waitFor("the service's consumer", async () => {
    const js = jetstream(nc);
    try {
      await (
        await js.jetstreamManager()
      ).consumers.info("HSMFLEET_WORK", autoImportSubjects.consumer("autoimport-fleet"));
      return true;
    } catch {
      return false;
    }
  });
  await container.getBlockBlobClient("forged.txt").upload("forged", 6);
  await jetstream(nc).publish(
    autoImportSubjects.batch("autoimport-fleet", 0),
    encodeAutoImportBatch({
      jobId: "autoimport-fleet",
      batchId: "forged-1",
      enableDeletions: false,
      changes: [{ kind: "created", blob: "forged.txt", sequencer: "1", eventTime: "" }],
    }),
  );

  await waitFor(
    "worker 0 to reach its seam and die",
    () => w0.exitCode !== null || w0.signalCode !== null,
    180_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message} (${sb.entity("events")!.count} messages left)\n${tail()}`);
  });
  const killed = await exitOf(w0);
  t.is(killed.signal, "SIGKILL", tail());
  const appliedByW0 = await countFiles(target);
  t.true(appliedByW0 > 0, "worker 0 applied part of the burst");
  t.true(sb.entity("events")!.count > 0, "messages were left when the worker was killed");
  start(["worker", "--worker-id", "fleet-w1"]);

  // The killed worker's items come back to the other after their ack wait (30 s by default).
  await waitFor("the whole burst", () => sb.entity("events")!.count === 0, 240_000).catch(
    (err: Error) => {
      throw new Error(`${err.message} (${sb.entity("events")!.count} left)\n${tail()}`);
    },
  );
  service.kill("SIGTERM");
  const exit = await exitOf(service);
  t.is(exit.code, 0, tail());
  const statusLine = outputs[1]!
    .split("\n")
    .filter((l) => l.includes('"messagesConsumed"'))
    .pop();
  const status = JSON.parse(statusLine ?? "{}") as Record<string, number | string>;
  t.is(status["state"], "Disabled");
  t.is(status["totalErrors"], 0);
  t.is(status["deadLettered"], 0);
  // The deleted blobs were gone before their BlobCreated was applied: nothing made, nothing removed.
  // Changes the killed worker applied (their sequencer recorded) but never reported are stale when
  // its item is applied again by the other worker: counted there instead.
  const vanished = Number(status["vanished"]);
  t.true(vanished <= n / 20 && vanished + Number(status["staleEvents"]) >= n / 20, tail());
  t.is(status["deletions"], 0);
  t.true(Number(status["duplicates"]) >= 50, `duplicates ${status["duplicates"]}`);
  t.is(status["messagesConsumed"], messages.length);

  // Both worker processes applied items: their results name them.
  const seen = new Set<string>();
  const consumer = await jetstream(nc).consumers.get(RESULTS_STREAM, {
    filter_subjects: autoImportSubjects.result("autoimport-fleet"),
  });
  const info = await consumer.info();
  for (let left = info.num_pending; left > 0; left--) {
    const m = await consumer.next({ expires: 5000 });
    if (!m) break;
    seen.add(decodeAutoImportResult(m.data).workerId);
  }
  t.deepEqual([...seen].sort(), ["fleet-w0", "fleet-w1"]);

  t.is(await countFiles(target), n - n / 20);
  t.false((await readdir(target)).includes("forged.txt"), "the forged item was not applied");
  t.regex(tail(), /UnsolicitedWorkItemError|unsolicited/);

  // The reference: a full import of the container (forged.txt aside).
  await container.getBlockBlobClient("forged.txt").delete();
  await startWorkers(t, server.url, 1, undefined, { storage });
  const full = join(tmp.path, "full");
  await mkdir(full);
  const summary = await runImportJob({ nc, target: full, container: "fleet", storage });
  t.is(summary.importedFiles, n - n / 20);
  t.deepEqual(
    (await readdir(target, { recursive: true })).sort(),
    (await readdir(full, { recursive: true })).sort(),
  );
});
