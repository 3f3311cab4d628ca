import { availableParallelism } from "node:os";
import { connectBus } from "@hsmfleet/bus";
import type { BusAuth, NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { Worker } from "@hsmfleet/worker";
import { startEmbeddedNats } from "./embedded-nats.js";
import type { EmbeddedNats } from "./embedded-nats.js";
import { startRuntimeDashboard } from "./telemetry.js";

export interface RuntimeOptions {
  /** NATS URL; undefined = the embedded default (local nats-server under the state dir). */
  nats?: string | undefined;
  stateDir: string;
  /** In-process workers to run; default the CPU count; 0 = rely on standalone workers. */
  workers?: number | undefined;
  workerConcurrency?: number | undefined;
  /** Storage credentials handed to in-process workers. */
  storage?: StorageTarget | undefined;
  logger?: Logger | undefined;
  topology?: TopologyOptions | undefined;
  /** Credentials and TLS for `nats` (not used with the embedded server). */
  auth?: BusAuth | undefined;
  /** Attempts per file on retryable storage failures (worker default 3). */
  maxAttempts?: number | undefined;
  /** Storage requests in flight per worker: "auto" (default) or fixed, and the auto cap. */
  requestConcurrency?: "auto" | number | undefined;
  maxConcurrency?: number | undefined;
}

export interface Runtime {
  nc: NatsConnection;
  natsUrl: string;
  embedded: EmbeddedNats | undefined;
  workers: Worker[];
  close(): Promise<void>;
}

export const defaultWorkerCount = (): number => availableParallelism();

/** Connects to NATS (starting the embedded server when no URL is given) and starts in-process workers. */
export const openRuntime = async (options: RuntimeOptions): Promise<Runtime> => {
  const embedded = options.nats
    ? undefined
    : await startEmbeddedNats({ stateDir: options.stateDir, logger: options.logger });
  if (embedded) markStartup("nats-started");
  const natsUrl = options.nats ?? embedded!.url;
  let nc: NatsConnection;
  try {
    nc = await connectBus({
      servers: natsUrl,
      name: "hsmfleet-cli",
      reconnectForever: false,
      auth: options.nats ? options.auth : undefined,
    });
  } catch (err) {
    await embedded?.close();
    throw err;
  }
  markStartup("nats-connected");
  const workers: Worker[] = [];
  const count = options.workers ?? defaultWorkerCount();
  try {
    // Made together: each looks up the topology and its consumers (round trips, no CPU to share).
    const made = await Promise.allSettled(
      Array.from({ length: count }, () =>
        Worker.create({
          nc,
          concurrency: options.workerConcurrency,
          logger: options.logger,
          workerId: undefined,
          storage: options.storage,
          topology: options.topology,
          shutdownGraceMs: 5000,
          maxAttempts: options.maxAttempts,
          requestConcurrency: options.requestConcurrency,
          maxRequestConcurrency: options.maxConcurrency,
        }),
      ),
    );
    for (const m of made) if (m.status === "fulfilled") workers.push(m.value);
    const failed = made.find((m) => m.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    // Leave nothing behind: an open connection or a child nats-server would keep the CLI alive.
    await nc.close();
    await embedded?.close();
    throw err;
  }
  markStartup("workers-created");
  const running = workers.map((w) => w.run());
  const dashboard = await startRuntimeDashboard(nc, options.logger);
  return {
    nc,
    natsUrl,
    embedded,
    workers,
    close: async () => {
      await dashboard?.close();
      await Promise.all(workers.map((w) => w.shutdown()));
      await Promise.allSettled(running);
      markStartup("workers-stopped");
      await nc.drain().catch(() => nc.close());
      markStartup("nats-closed");
      await embedded?.close();
    },
  };
};
