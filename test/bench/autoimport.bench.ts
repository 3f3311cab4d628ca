/**
 * `npm run bench:autoimport`: Blob Storage events applied per second by one `hsmfleet autoimport`
 * service (the intake: Service Bus STAND-IN queue -> sealed work items over NATS) and
 * `HSMFLEET_BENCH_WORKERS` `hsmfleet worker` processes applying them, against a blob store holding
 * the blobs (each BlobCreated reads its blob's properties there) and a real nats-server. The blobs
 * are made first (not measured), then the events are queued, then the workers and the service
 * start and the clock runs until the queue is empty.
 *
 * Environment:
 *   HSMFLEET_BENCH_EVENTS     events (= blobs) (default 100,000)
 *   HSMFLEET_BENCH_WORKERS    worker processes (default 2)
 *   HSMFLEET_BENCH_STORAGE    `sink` (default: the benchmark sink, test/bench/blob-sink.ts, in a
 *                             process of its own; the blobs are registered with it, their ETags
 *                             listed back) or `azurite` (the blobs written to a local Azurite:
 *                             ~30 blobs/s on this machine, so for small N only)
 *   HSMFLEET_BENCH_PROFILE    a directory: the service and the workers run with --cpu-prof there
 *                             (print the top functions with `node test/dist/bench/profile-top.js`)
 *   HSMFLEET_BENCH_LOG_LEVEL  the processes' log level (default warn)
 *
 * Prints one JSON line: events/s, the load average before, during (mean) and after, and the CPU
 * seconds (user + system) of the service, the workers, the blob store and this process (the
 * Service Bus stand-in runs in it).
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
import type { ContainerClient } from "@azure/storage-blob";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import {
  blobEvent,
  startAzurite,
  startNatsServer,
  startServiceBusStandIn,
  tempDir,
} from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import { cpuSeconds } from "./proc.js";

const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const blobName = (i: number): string => `d${i % 100}/f${i}`;

interface Store {
  connectionString: string;
  /** The ETag of every blob, by index. */
  make(container: string, n: number): Promise<string[]>;
  /** CPU seconds of the store's own process (undefined: in this process or not measured). */
  cpu(): number | undefined;
  stop(): Promise<void>;
}

const containerOf = (connectionString: string, name: string): ContainerClient =>
  BlobServiceClient.fromConnectionString(connectionString).getContainerClient(name);

/** The benchmark sink: blobs registered out of band (one request), their ETags listed back. */
const sinkStore = async (): Promise<Store> => {
  const sink = await spawnBlobSink();
  return {
    connectionString: sink.connectionString,
    make: async (container, n) => {
      await sink.register({
        container,
        blobs: Array.from({ length: n }, (_, i) => ({
          name: blobName(i),
          size: 1,
          metadata: { permissions: "0644" },
        })),
      });
      const etags = new Map<string, string>();
      for await (const b of containerOf(sink.connectionString, container).listBlobsFlat())
        etags.set(b.name, b.properties.etag);
      return Array.from({ length: n }, (_, i) => etags.get(blobName(i))!);
    },
    cpu: () => cpuSeconds(sink.pid),
    stop: () => sink.stop(),
  };
};

/** A local Azurite: every blob uploaded (slow: for small N). */
const azuriteStore = async (): Promise<Store> => {
  const azurite = await startAzurite();
  return {
    connectionString: azurite.connectionString,
    make: async (name, n) => {
      const container = containerOf(azurite.connectionString, name);
      await container.create();
      const etags = new Array<string>(n);
      let next = 0;
      await Promise.all(
        Array.from({ length: 128 }, async () => {
          while (next < n) {
            const i = next++;
            const r = await container
              .getBlockBlobClient(blobName(i))
              .upload("x", 1, { metadata: { permissions: "0644" } });
            etags[i] = r.etag!;
          }
        }),
      );
      return etags;
    },
    cpu: () => undefined,
    stop: () => azurite.stop(),
  };
};

const main = async () => {
  const events = envInt("HSMFLEET_BENCH_EVENTS", 100_000);
  const workers = envInt("HSMFLEET_BENCH_WORKERS", 2);
  const storage = process.env["HSMFLEET_BENCH_STORAGE"] ?? "sink";
  if (storage !== "sink" && storage !== "azurite")
    throw new Error("HSMFLEET_BENCH_STORAGE must be sink or azurite");
  const profileDir = process.env["HSMFLEET_BENCH_PROFILE"];
  const loadBefore = loadavg()[0]!;
  const tmp = await tempDir();
  const store = storage === "sink" ? await sinkStore() : await azuriteStore();
  const nats = await startNatsServer();
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  await ensureTopology(nc, {});
  const sb = await startServiceBusStandIn();
  sb.createQueue("events", { lockDurationMs: 60_000 });
  const client = new ServiceBusClient(sb.connectionString);
  const children: ChildProcess[] = [];
  try {
    const t0 = performance.now();
    const etags = await store.make("bench", events);
    const messages = etags.map((etag, i): ServiceBusMessage => {
      const e = blobEvent({
        type: "BlobCreated",
        container: "bench",
        blob: blobName(i),
        etag,
        size: 1,
        sequencer: i + 1,
      });
      return { body: e, messageId: String(e.id) };
    });
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
      `${events} blobs (${storage}) in ${((tBlobs - t0) / 1000).toFixed(1)} s; queued in ${((tQueued - tBlobs) / 1000).toFixed(1)} s\n`,
    );

    const target = join(tmp.path, "target");
    await mkdir(target);
    if (profileDir) await mkdir(profileDir, { recursive: true });
    const env = {
      ...process.env,
      HSMFLEET_SERVICEBUS_CONNECTION_STRING: sb.connectionString,
      HSMFLEET_LOG_LEVEL: process.env["HSMFLEET_BENCH_LOG_LEVEL"] ?? "warn",
    };
    const cli = (args: string[]) =>
      spawn(
        process.execPath,
        [
          ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
          CLI_BIN,
          "--nats",
          nats.url,
          "--storage",
          store.connectionString,
          ...args,
        ],
        { env, stdio: ["ignore", "ignore", "inherit"] },
      );
    const cpuBefore = process.cpuUsage();
    const sinkCpuBefore = store.cpu() ?? 0;
    const natsCpuBefore = cpuSeconds(nats.pid) ?? 0;
    const start = performance.now();
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
    const cpuOf = children.map(() => 0);
    const sampleCpu = () =>
      children.forEach((c, i) => {
        const s = c.pid === undefined ? undefined : cpuSeconds(c.pid);
        if (s !== undefined) cpuOf[i] = s;
      });
    const queue = sb.entity("events")!;
    const loads: number[] = [];
    let last = performance.now();
    while (queue.count > 0) {
      await new Promise((r) => setTimeout(r, 200));
      if (performance.now() - last > 5000) {
        last = performance.now();
        loads.push(loadavg()[0]!);
        sampleCpu();
        process.stderr.write(
          `  ${events - queue.count} applied, ${(((events - queue.count) * 1000) / (last - start)).toFixed(0)} events/s\n`,
        );
      }
    }
    const seconds = (performance.now() - start) / 1000;
    sampleCpu();
    const benchCpu = process.cpuUsage(cpuBefore);
    const sinkCpu = (store.cpu() ?? sinkCpuBefore) - sinkCpuBefore;
    const natsCpu = (cpuSeconds(nats.pid) ?? natsCpuBefore) - natsCpuBefore;
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
    const round2 = (v: number) => Number(v.toFixed(2));
    const result = {
      events,
      workers,
      storage,
      seconds: round2(seconds),
      eventsPerSecond: Math.round(events / seconds),
      filesInTarget: files,
      cpus: cpus().length,
      loadavg1mBefore: round2(loadBefore),
      loadavg1mDuringRun: loads.length
        ? round2(loads.reduce((a, b) => a + b, 0) / loads.length)
        : null,
      loadavg1mAfter: round2(loadavg()[0]!),
      cpuSeconds: {
        service: round2(cpuOf[workers]!),
        workers: round2(cpuOf.slice(0, workers).reduce((a, b) => a + b, 0)),
        store: storage === "sink" ? round2(sinkCpu) : null,
        benchAndStandIn: round2((benchCpu.user + benchCpu.system) / 1e6),
        natsServer: round2(natsCpu),
      },
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (files !== events) throw new Error(`expected ${events} files in the target, found ${files}`);
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await client.close();
    await sb.stop();
    await nc.close();
    await nats.stop();
    await store.stop();
    await tmp.cleanup();
  }
};

await main();
