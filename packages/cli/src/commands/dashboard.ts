import { readPolicyPanel } from "@hsmfleet/coordinator";
import { DASHBOARD_DEFAULTS, DEFAULT_CEILING_BYTES_PER_SECOND } from "@hsmfleet/dashboard";
import { Option } from "commander";
import { formatSize, parseSize } from "../size.js";
import { intArg } from "./context.js";
import type { CliContext } from "./context.js";

/** "7.5GiB/s", "7.5GiB", "8000MB/s" → bytes per second. */
export const parseRate = (text: string): number => parseSize(text.replace(/\/s$/i, ""));

/** `hsmfleet dashboard`: the live throughput page for the fleet on this NATS server. */
export const registerDashboardCommand = (ctx: CliContext): void => {
  const { program, withStore } = ctx;
  program
    .command("dashboard")
    .description(
      "serve a live web page: fleet throughput against the ceiling, per VM and worker, job progress and ETA, errors",
    )
    .option(
      "--port <port>",
      "port to serve on (0 = any free port)",
      intArg("--port", 0),
      DASHBOARD_DEFAULTS.port,
    )
    .option(
      "--host <address>",
      "address to listen on (0.0.0.0 to share it beyond this machine)",
      DASHBOARD_DEFAULTS.host,
    )
    .addOption(
      new Option("--ceiling <rate>", "throughput ceiling drawn on the chart, e.g. 7.5GiB/s")
        .argParser(parseRate)
        .default(
          DEFAULT_CEILING_BYTES_PER_SECOND,
          `${formatSize(DEFAULT_CEILING_BYTES_PER_SECOND)}/s`,
        ),
    )
    .option(
      "--interval <ms>",
      "update period",
      intArg("--interval", 100),
      DASHBOARD_DEFAULTS.intervalMs,
    )
    .action(async (opts: { port: number; host: string; ceiling: number; interval: number }) => {
      const { startDashboard } = await import("@hsmfleet/dashboard");
      await withStore(async (store, nc) => {
        const dashboard = await startDashboard({
          nc,
          listJobs: () => store.list(),
          policies: () => readPolicyPanel(nc),
          port: opts.port,
          host: opts.host,
          ceilingBytesPerSecond: opts.ceiling,
          intervalMs: opts.interval,
        });
        process.stdout.write(`dashboard at ${dashboard.url} (Ctrl-C stops it)\n`);
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await dashboard.close();
      });
    });
};
