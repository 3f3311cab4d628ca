import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import type { NatsConnection, TopologyOptions } from "@hsmfleet/bus";
import { Worker } from "@hsmfleet/worker";
import type { WorkerHooks, WorkerOptions } from "@hsmfleet/worker";
import { createLogger } from "@hsmfleet/telemetry";
import { startAzurite, startNatsServer, startServiceBusStandIn } from "@hsmfleet/testkit";
import type { AzuriteFixture, NatsServerFixture, ServiceBusStandIn } from "@hsmfleet/testkit";
import { ServiceBusClient } from "@azure/service-bus";
import type { ExecutionContext } from "ava";

/**
 * The `hsmfleet` executable as a user runs it: the launcher, which runs the one-file bundle of the
 * build (or the compiled modules when the bundle is stale or HSMFLEET_BUNDLE=0).
 */
export const CLI_BIN = fileURLToPath(
  new URL("../../bin/hsmfleet.js", import.meta.resolve("@hsmfleet/cli")),
);

/** Short ack wait so redelivery after a kill happens within a test's time. */
export const TEST_TOPOLOGY: TopologyOptions = { ackWaitMs: 2000, maxDeliver: 5, update: true };

export interface Bus {
  server: NatsServerFixture;
  nc: NatsConnection;
}

/** A real nats-server with the hsmfleet topology, stopped when the test ends. */
export const startBus = async (
  t: ExecutionContext,
  topology: TopologyOptions = TEST_TOPOLOGY,
): Promise<Bus> => {
  const server = await startNatsServer();
  t.teardown(() => server.stop());
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  t.teardown(() => nc.close());
  await ensureTopology(nc, topology);
  return { server, nc };
};

/** In-process workers on their own connections, shut down when the test ends. */
export const startWorkers = async (
  t: ExecutionContext,
  url: string,
  count: number,
  hooks?: WorkerHooks,
  extra: Partial<WorkerOptions> = {},
): Promise<Worker[]> => {
  const workers: Worker[] = [];
  for (let i = 0; i < count; i++) {
    const nc = await connectBus({ servers: url, reconnectForever: false });
    const worker = await Worker.create({
      ...extra,
      nc,
      hooks,
      workerId: `test-worker-${i}`,
      shutdownGraceMs: 2000,
    });
    const running = worker.run();
    t.teardown(async () => {
      await worker.shutdown();
      await running.catch(() => undefined);
      await nc.close();
    });
    workers.push(worker);
  }
  return workers;
};

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Working directory of the CLI (default: the test's). */
  cwd?: string;
  /** Close our end of the child's stdout / stderr pipe at once, as `| head -0` would. */
  closeStdout?: boolean;
  closeStderr?: boolean;
}

/** Runs the hsmfleet CLI to completion. */
export const runCli = (args: string[], options: RunCliOptions = {}): Promise<CliRun> =>
  new Promise((resolve, reject) => {
    const child = spawnCli(args, options);
    if (options.closeStdout) child.stdout?.destroy();
    if (options.closeStderr) child.stderr?.destroy();
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    // On the timeout: SIGTERM first, so the CLI stops the nats-server and Azurite it started
    // (SIGKILL alone left them running, orphaned, after the test), then SIGKILL after 10 s.
    let killer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    }, options.timeoutMs ?? 60_000);
    child.once("error", reject);
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    });
  });

/** Starts the hsmfleet CLI as a child process (caller waits for it). */
export const spawnCli = (
  args: string[],
  options: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number; cwd?: string } = {},
): ChildProcess =>
  spawn(process.execPath, [CLI_BIN, ...args], {
    env: { ...process.env, HSMFLEET_LOG_LEVEL: "warn", ...options.env },
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.gid ?? options.uid }),
  });

/** Waits for `predicate` to hold, polling every 50 ms; fails after `timeoutMs`. */
export const waitFor = async (
  what: string,
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

/**
 * How the child ended, once its stdout and stderr are read to the end: Node may emit "exit"
 * before the last output of a pipe is delivered, so a test that read the output right after
 * "exit" sometimes found it empty (a scan's summary was lost that way in CI). "close" comes after
 * both; it is awaited at most `drainMs` (a grandchild that inherited the pipe may hold it open).
 */
export const exitOf = (
  child: ChildProcess,
  drainMs = 5_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve) => {
    const drained = (): boolean =>
      (child.stdout === null || child.stdout.destroyed) &&
      (child.stderr === null || child.stderr.destroyed);
    const ended = () => {
      const result = { code: child.exitCode, signal: child.signalCode };
      if (drained()) return resolve(result);
      const timer = setTimeout(() => resolve(result), drainMs);
      child.once("close", () => {
        clearTimeout(timer);
        resolve(result);
      });
    };
    if (child.exitCode !== null || child.signalCode !== null) ended();
    else child.once("exit", ended);
  });

/** A real Azurite, stopped when the test ends. */
export const startStorage = async (t: ExecutionContext): Promise<AzuriteFixture> => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  return azurite;
};

/**
 * The Service Bus stand-in (an AMQP 1.0 server on loopback, not Azure) and a client of it, both
 * closed when the test ends. Queues, topics and subscriptions are the test's to create.
 */
export const startServiceBus = async (
  t: ExecutionContext,
): Promise<{ sb: ServiceBusStandIn; client: ServiceBusClient }> => {
  const sb = await startServiceBusStandIn();
  const client = new ServiceBusClient(sb.connectionString);
  t.teardown(async () => {
    await client.close();
    await sb.stop();
  });
  return { sb, client };
};

/** `hsmfleet jobs --json` from another process; [] while the command cannot answer yet (busy machine). */
export const listJobs = async (url: string): Promise<Array<{ jobId: string; state: string }>> => {
  const run = await runCli(["--nats", url, "jobs", "--json"]);
  if (run.code !== 0) return [];
  try {
    return JSON.parse(run.stdout) as Array<{ jobId: string; state: string }>;
  } catch {
    return [];
  }
};

/** A worker logger whose warn-and-above lines the test reads. */
export const capturedLogger = () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    role: "worker",
    level: "warn",
    destination: new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split("\n"))
          if (line.trim() !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  return { logger, lines };
};
