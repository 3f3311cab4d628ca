/**
 * `npm run bench:autoimport`: Blob Storage events applied per second by one `hsmfleet autoimport`
 * service (the intake: Service Bus STAND-IN queue -> sealed work items over NATS) and
 * `HSMFLEET_BENCH_WORKERS` `hsmfleet worker` processes applying them, against a local Azurite
 * holding the blobs (each event reads its blob's properties there) and a real nats-server. The
 * blobs are written first (not measured), then the events are queued, then the workers and the
 * service start and the clock runs until the queue is empty.
 *
 * Environment:
 *   HSMFLEET_BENCH_EVENTS     events (= blobs) (default 100,000)
 *   HSMFLEET_BENCH_WORKERS    worker processes (default 2)
 */
import { mkdir, readdir } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { ServiceBusClient } from "@azure/service-bus";
import type { ServiceBusMessage } from "@azure/service-bus";
import { BlobServiceClient } from "@azure/storage-blob";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import {
  blobEvent,
  startAzurite,
  startNatsServer,
  startServiceBusStandIn,
  tempDir,
} from "@hsmfleet/testkit";

const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const main = async () => {
  const events = envInt("HSMFLEET_BENCH_EVENTS", 100_000);
  const workers = envInt("HSMFLEET_BENCH_WORKERS", 2);
  const tmp = await tempDir();
  const azurite = await startAzurite();
  const nats = await startNatsServer();
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  await ensureTopology(nc, {});
  const sb = await startServiceBusStandIn();
  sb.createQueue("events", { lockDurationMs: 60_000 });
  const client = new ServiceBusClient(sb.connectionString);
  const children: ChildProcess[] = [];
  try {
    const container = BlobServiceClient.fromConnectionString(
      azurite.connectionString,
    ).getContainerClient("bench");
    await container.create();
    const t0 = performance.now();
    const messages: ServiceBusMessage[] = new Array<ServiceBusMessage>(events);
    let next = 0;
    await Promise.all(
      Array.from({ length: 128 }, async () => {
        while (next < events) {
          const i = next++;
          const name = `d${i % 100}/f${i}`;
          const r = await container
            .getBlockBlobClient(name)
            .upload("x", 1, { metadata: { permissions: "0644" } });
          const e = blobEvent({
            type: "BlobCreated",
            container: "bench",
            blob: name,
            etag: r.etag!,
            size: 1,
            sequencer: i + 1,
          });
          messages[i] = { body: e, messageId: String(e.id) };
        }
      }),
    );
    const tBlobs = performance.now();
    const sender = client.createSender("events");
    for (let i = 0; i < events;) {
      const batch = await sender.createMessageBatch();
      while (i < events && batch.tryAddMessage(messages[i]!)) i++;
      await sender.sendMessages(batch);
    }
    await sender.close();
    const tQueued = performance.now();
    process.stderr.write(
      `${events} blobs in ${((tBlobs - t0) / 1000).toFixed(1)} s; queued in ${((tQueued - tBlobs) / 1000).toFixed(1)} s\n`,
    );

    const target = join(tmp.path, "target");
    await mkdir(target);
    const start = performance.now();
    const env = {
      ...process.env,
      HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
      HSMFLEET_LOG_LEVEL: process.env["HSMFLEET_BENCH_LOG_LEVEL"] ?? "warn",
    };
    const cli = (args: string[]) =>
      spawn(
        process.execPath,
        [CLI_BIN, "--nats", nats.url, "--storage", azurite.connectionString, ...args],
        {
          env,
          stdio: ["ignore", "ignore", "inherit"],
        },
      );
    for (let w = 0; w < workers; w++) children.push(cli(["worker", "--worker-id", `bench-w${w}`]));
    children.push(
      cli([
        "--workers",
        "0",
        "autoimport",
        target,
        "--container",
        "bench",
        "--events",
        "events",
        "--no-initial-scan",
        "--name",
        "bench",
      ]),
    );
    const queue = sb.entity("events")!;
    const loads: number[] = [];
    let last = performance.now();
    while (queue.count > 0) {
      await new Promise((r) => setTimeout(r, 200));
      if (performance.now() - last > 5000) {
        last = performance.now();
        loads.push(loadavg()[0]!);
        process.stderr.write(
          `  ${events - queue.count} applied, ${(((events - queue.count) * 1000) / (last - start)).toFixed(0)} events/s\n`,
        );
      }
    }
    const seconds = (performance.now() - start) / 1000;
    // A long-running service stops cleanly on SIGTERM: every process exits 0 within 60 s.
    const exits = children.map(
      (c) => new Promise<string>((r) => c.once("exit", (code, sig) => r(sig ?? String(code)))),
    );
    for (const c of children) c.kill("SIGTERM");
    const stopped = await Promise.race([
      Promise.all(exits),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000).unref()),
    ]);
    if (stopped === undefined || stopped.some((code) => code !== "0"))
      throw new Error(
        `SIGTERM: the processes did not all exit 0 within 60 s: ${stopped?.join(", ") ?? "still running"}`,
      );
    const files = (await readdir(target, { recursive: true })).filter((n) =>
      n.includes("/f"),
    ).length;
    const result = {
      events,
      workers,
      seconds: Number(seconds.toFixed(2)),
      eventsPerSecond: Math.round(events / seconds),
      filesInTarget: files,
      cpus: cpus().length,
      loadavg1m: Number(loadavg()[0]!.toFixed(2)),
      loadavg1mDuringRun: loads.length
        ? Number((loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(2))
        : null,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (files !== events) throw new Error(`expected ${events} files in the target, found ${files}`);
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await client.close();
    await sb.stop();
    await nc.close();
    await nats.stop();
    await azurite.stop();
    await tmp.cleanup();
  }
};

await main();
