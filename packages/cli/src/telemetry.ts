import type { Command } from "commander";
import type { NatsConnection } from "@hsmfleet/bus";
import { JobStore, ensureTopology } from "@hsmfleet/bus";
import { startTelemetry } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";

let dashboardPort: number | undefined;

/**
 * Starts telemetry for the command about to run: the standalone worker reports as
 * hsmfleet-worker (with its VM name and worker id), everything else as hsmfleet-coordinator
 * (in-process workers included; their spans carry hsmfleet.worker_id). Loads nothing when no
 * OTEL_* variable and no --metrics-port is given.
 */
export const startCliTelemetry = async (
  action: Command,
  globals: { metricsPort?: number | undefined; dashboardPort?: number | undefined },
): Promise<void> => {
  dashboardPort = globals.dashboardPort || undefined;
  const worker = action.name() === "worker";
  const opts = action.opts<{ vmName?: string; workerId?: string }>();
  await startTelemetry({
    role: worker ? "worker" : "coordinator",
    vmName: worker ? opts.vmName : undefined,
    workerId: worker ? opts.workerId : undefined,
    metricsPort: globals.metricsPort,
  });
};

/**
 * The dashboard beside a job run with the embedded runtime (global --dashboard-port); undefined
 * when not asked for. Its failure to start is logged, never fatal to the job.
 */
export const startRuntimeDashboard = async (
  nc: NatsConnection,
  logger: Logger | undefined,
): Promise<{ close(): Promise<void> } | undefined> => {
  if (!dashboardPort) return undefined;
  try {
    const { startDashboard } = await import("@hsmfleet/dashboard");
    const { jobs } = await ensureTopology(nc);
    const store = new JobStore(jobs);
    const dashboard = await startDashboard({
      nc,
      listJobs: () => store.list(),
      port: dashboardPort,
    });
    process.stderr.write(`dashboard at ${dashboard.url}\n`);
    return dashboard;
  } catch (err) {
    logger?.warn({ err: String(err) }, "the dashboard did not start");
    return undefined;
  }
};
