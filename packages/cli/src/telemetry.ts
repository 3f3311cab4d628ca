import type { Command } from "commander";
import { startTelemetry } from "@hsmfleet/telemetry";

/**
 * Starts telemetry for the command about to run: the standalone worker reports as
 * hsmfleet-worker (with its VM name and worker id), everything else as hsmfleet-coordinator
 * (in-process workers included; their spans carry hsmfleet.worker_id). Loads nothing when no
 * OTEL_* variable and no --metrics-port is given.
 */
export const startCliTelemetry = async (
  action: Command,
  globals: { metricsPort?: number | undefined },
): Promise<void> => {
  const worker = action.name() === "worker";
  const opts = action.opts<{ vmName?: string; workerId?: string }>();
  await startTelemetry({
    role: worker ? "worker" : "coordinator",
    vmName: worker ? opts.vmName : undefined,
    workerId: worker ? opts.workerId : undefined,
    metricsPort: globals.metricsPort,
  });
};
