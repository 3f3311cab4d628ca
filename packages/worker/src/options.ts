import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { NatsConnection } from "@hsmfleet/bus";
import type { Logger } from "@hsmfleet/telemetry";
import type { WalkShard } from "@hsmfleet/protocol";

/** Extension points, called around each work item (tests use them to inject faults). */
export interface WorkerHooks {
  /** Before a walk shard's directory is opened. */
  beforeWalkShard?: ((shard: WalkShard) => Promise<void> | void) | undefined;
  /** After a shard's children and results were published, before the ack. Throwing makes the item be redelivered. */
  afterWalkShard?: ((shard: WalkShard) => Promise<void> | void) | undefined;
}

export interface WorkerOptions {
  /** A connected NATS client. The worker does not close it. */
  nc: NatsConnection;
  /** Unique per process. Default: `<vmName>-<pid>-<random>`. */
  workerId?: string | undefined;
  /** The VM this worker runs on, shown in heartbeats. Default: the host name. */
  vmName?: string | undefined;
  /** Work items in flight at once. Default 16. */
  concurrency?: number | undefined;
  /** Entries per directory read from the file system. Default 4096. */
  readBatchSize?: number | undefined;
  /** Heartbeat period. Default 5000 ms. */
  heartbeatIntervalMs?: number | undefined;
  /** How long shutdown() waits for in-flight items before abandoning them to redelivery. Default 30,000 ms. */
  shutdownGraceMs?: number | undefined;
  logger?: Logger | undefined;
  hooks?: WorkerHooks | undefined;
}

export const WORKER_DEFAULTS = {
  concurrency: 16,
  readBatchSize: 4096,
  heartbeatIntervalMs: 5000,
  shutdownGraceMs: 30_000,
} as const;

export interface ResolvedWorkerOptions {
  nc: NatsConnection;
  workerId: string;
  vmName: string;
  concurrency: number;
  readBatchSize: number;
  heartbeatIntervalMs: number;
  shutdownGraceMs: number;
  logger: Logger | undefined;
  hooks: WorkerHooks;
}

export const resolveWorkerOptions = (o: WorkerOptions): ResolvedWorkerOptions => {
  const vmName = o.vmName ?? hostname();
  return {
    nc: o.nc,
    vmName,
    workerId: o.workerId ?? `${vmName}-${process.pid}-${randomBytes(3).toString("hex")}`,
    concurrency: o.concurrency ?? WORKER_DEFAULTS.concurrency,
    readBatchSize: o.readBatchSize ?? WORKER_DEFAULTS.readBatchSize,
    heartbeatIntervalMs: o.heartbeatIntervalMs ?? WORKER_DEFAULTS.heartbeatIntervalMs,
    shutdownGraceMs: o.shutdownGraceMs ?? WORKER_DEFAULTS.shutdownGraceMs,
    logger: o.logger,
    hooks: o.hooks ?? {},
  };
};
