// The autoimport service and its workers under the fleet's NATS permissions
// (deploy/nats/hsmfleet-permissions.conf): the service runs as the coordinator user, the worker as
// the worker user; both use the bucket hsmfleet-autoimport (the service's status and applied
// message ids, the workers' last sequencer per blob), which neither user could touch before.
import { mkdir, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { BlobServiceClient } from "@azure/storage-blob";
import { startNatsServer, tempDir } from "@hsmfleet/testkit";
import { putWithEvent } from "./blob-writes.js";
import { exitOf, runCli, spawnCli, startServiceBus, startStorage, waitFor } from "./helpers.js";

test("autoimport runs under the deploy NATS permissions: the service as the coordinator user, the worker as the worker user, nothing refused", async (t) => {
  const confPath = fileURLToPath(
    new URL("../../../deploy/nats/hsmfleet-permissions.conf", import.meta.url),
  );
  const server = await startNatsServer({ configText: await readFile(confPath, "utf8") });
  t.teardown(() => server.stop());
  const azurite = await startStorage(t);
  const tmp = await tempDir();
  t.teardown(() => tmp.cleanup());
  const { sb, client } = await startServiceBus(t);
  sb.createQueue("events", { lockDurationMs: 5000 });
  const container = BlobServiceClient.fromConnectionString(
    azurite.connectionString,
  ).getContainerClient("perm");
  await container.create();
  const storageEnv = { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString };
  const coordinator = { NATS_USER: "coordinator", NATS_PASSWORD: "change-me-coordinator" };

  // The coordinator's user creates the topology, then a worker attaches.
  const jobsRun = await runCli(["--nats", server.url, "jobs", "--json"], { env: coordinator });
  t.is(jobsRun.code, 0, jobsRun.stderr);
  const worker = spawnCli(["--nats", server.url, "--log-level", "info", "worker"], {
    env: { ...storageEnv, NATS_USER: "worker", NATS_PASSWORD: "change-me-worker" },
  });
  let workerLog = "";
  worker.stdout?.on("data", (d: Buffer) => (workerLog += d.toString()));
  worker.stderr?.on("data", (d: Buffer) => (workerLog += d.toString()));
  t.teardown(() => worker.kill("SIGKILL"));
  await waitFor("the worker to start", () => workerLog.includes("worker started"), 30_000);

  const sender = client.createSender("events");
  for (let i = 0; i < 5; i++) {
    const e = await putWithEvent(container, `d/f${i}.txt`, `file ${i}`, 100 + i, {
      metadata: { permissions: "0644" },
    });
    await sender.sendMessages({ body: e, messageId: String(e.id) });
  }
  await sender.close();

  const target = join(tmp.path, "target");
  await mkdir(target);
  const service = spawnCli(
    [
      "--nats",
      server.url,
      "--workers",
      "0",
      "autoimport",
      target,
      "--container",
      "perm",
      "--events",
      "events",
      "--no-initial-scan",
      "--json",
    ],
    {
      env: {
        ...storageEnv,
        ...coordinator,
        HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
        HSMFLEET_LOG_LEVEL: "info",
      },
    },
  );
  let output = "";
  service.stdout!.on("data", (d: Buffer) => (output += d.toString()));
  service.stderr!.on("data", (d: Buffer) => (output += d.toString()));
  t.teardown(() => service.kill("SIGKILL"));
  const shown = () =>
    `--- service:\n${output.slice(-3000)}\n--- worker:\n${workerLog.slice(-3000)}\n--- server:\n${server.logs().slice(-3000)}`;
  await waitFor(
    "the 5 events to be applied and completed",
    () => sb.entity("events")!.count === 0,
    90_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${shown()}`);
  });
  service.kill("SIGTERM");
  const exit = await exitOf(service);
  t.is(exit.code, 0, shown());
  t.deepEqual(
    (await readdir(join(target, "d"))).sort(),
    [0, 1, 2, 3, 4].map((i) => `f${i}.txt`),
  );
  const status = JSON.parse(
    output
      .split("\n")
      .filter((l) => l.includes('"messagesConsumed"'))
      .pop() ?? "{}",
  ) as Record<string, unknown>;
  t.like(status, { state: "Disabled", messagesConsumed: 5, totalErrors: 0 });
  t.false(/Permissions Violation/i.test(workerLog + output), shown());
  t.false(/Violation/i.test(server.logs()), shown());
});
