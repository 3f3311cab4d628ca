import { Command, CommanderError, Option } from "commander";
import { HsmfleetError, errorMessage } from "@hsmfleet/core";
import { shutdownTelemetry } from "@hsmfleet/telemetry";
import { registerAdminCommands } from "./commands/admin.js";
import { ExitCode, createCliContext, intArg, requestConcurrencyArg } from "./commands/context.js";
import type { CliContext } from "./commands/context.js";
import { registerDashboardCommand } from "./commands/dashboard.js";
import { registerAutoImportCommand } from "./commands/autoimport.js";
import { registerServeCommand } from "./commands/serve.js";
import { registerDeployCommand } from "./commands/deploy.js";
import { registerExportCommand } from "./commands/export.js";
import { registerImportCommand } from "./commands/import.js";
import { registerPlanCommand } from "./commands/plan.js";
import { registerPolicyCommand } from "./commands/policy.js";
import { registerReportCommand } from "./commands/report.js";
import { registerRestoreCommand } from "./commands/restore.js";
import { registerHsmCommand } from "./commands/hsm.js";
import { registerScanCommand } from "./commands/scan.js";
import { registerServerCommand } from "./commands/server.js";
import { registerSyncCommand } from "./commands/sync.js";
import { registerVerifyCommand } from "./commands/verify.js";
import { registerWorkerCommand } from "./commands/worker.js";
import { addNatsAuthOptions } from "./nats-options.js";
import { defaultWorkerCount } from "./runtime.js";
import { startCliTelemetry } from "./telemetry.js";

export { ExitCode } from "./commands/context.js";

/**
 * Every command module, in the order `--help` lists them: one per job kind (scan, export, import,
 * restore, hsm, verify: each in commands/<kind>.ts), then the fleet and admin commands. A new job
 * kind adds its module and one line here; `status`, `jobs` and the dashboard show it through its
 * report in the coordinator (job-reports.ts).
 */
const COMMANDS: ReadonlyArray<(ctx: CliContext) => void> = [
  registerScanCommand,
  registerExportCommand,
  registerImportCommand,
  registerRestoreCommand,
  registerHsmCommand,
  registerVerifyCommand,
  registerSyncCommand,
  registerWorkerCommand,
  registerPlanCommand,
  registerDeployCommand,
  registerAdminCommands,
  registerServerCommand,
  registerDashboardCommand,
  registerPolicyCommand,
  registerReportCommand,
  registerAutoImportCommand,
  registerServeCommand,
];

export const buildProgram = (): Command => {
  const program = new Command("hsmfleet")
    .description(
      "Move data between Lustre and Azure Blob with a fleet of workers coordinated over NATS JetStream.",
    )
    .version("0.1.0")
    .addOption(
      new Option(
        "--nats <url>",
        "NATS server URL; without it, the embedded default starts a local nats-server",
      ).env("HSMFLEET_NATS_URL"),
    )
    .addOption(
      new Option(
        "--storage <target>",
        "Blob storage: a connection string, an account URL (Entra ID / managed identity) or a SAS URL; default AZURE_STORAGE_CONNECTION_STRING, else a local Azurite",
      ),
    )
    .addOption(
      new Option(
        "--state-dir <dir>",
        "embedded-default state (JetStream store, job files); default ~/.local/state/hsmfleet",
      ).env("HSMFLEET_STATE_DIR"),
    )
    .addOption(
      new Option(
        "--workers <n>",
        `in-process workers (default: CPU count, ${defaultWorkerCount()} here; 0 = wait for standalone workers)`,
      ).argParser(intArg("--workers", 0)),
    )
    .addOption(
      new Option(
        "--max-attempts <n>",
        "attempts per file on retryable storage failures before it goes to the error log (workers started by this command)",
      )
        .env("HSMFLEET_MAX_ATTEMPTS")
        .argParser(intArg("--max-attempts", 1)),
    )
    .addOption(
      new Option(
        "--request-concurrency <auto|n>",
        "storage requests each worker started by this command keeps in flight: auto (default) adapts it up to --max-concurrency, backing off on 429/503 and climbing latency; a number fixes it",
      )
        .env("HSMFLEET_REQUEST_CONCURRENCY")
        .argParser(requestConcurrencyArg),
    )
    .addOption(
      new Option(
        "--max-concurrency <n>",
        "cap of the auto request concurrency per worker (default 64)",
      )
        .env("HSMFLEET_MAX_CONCURRENCY")
        .argParser(intArg("--max-concurrency", 1)),
    )
    .addOption(
      new Option("--log-level <level>", "log level: fatal, error, warn, info, debug, trace")
        .env("HSMFLEET_LOG_LEVEL")
        .default("warn"),
    )
    .addOption(
      new Option(
        "--metrics-port <port>",
        "serve Prometheus metrics on this port (0 = off); traces and OTLP metrics follow the OTEL_* variables",
      )
        .env("HSMFLEET_METRICS_PORT")
        .argParser(intArg("--metrics-port", 0)),
    )
    .addOption(
      new Option(
        "--dashboard-port <port>",
        "with a job run here (scan, export), also serve the live dashboard on this port (0 = off)",
      )
        .env("HSMFLEET_DASHBOARD_PORT")
        .argParser(intArg("--dashboard-port", 0)),
    )
    .hook("preAction", (root, action) =>
      startCliTelemetry(action, root.opts<{ metricsPort?: number; dashboardPort?: number }>()),
    )
    .showHelpAfterError()
    // Usage errors exit 2 like every other "could not start" (commander's own default is 1).
    .exitOverride();
  addNatsAuthOptions(program);

  // One module per command (or family of commands); each adds itself to the program.
  const ctx = createCliContext(program);
  for (const register of COMMANDS) register(ctx);
  return program;
};

/** Runs the CLI; errors become one clear line on stderr and an exit code. */
export const main = async (argv: string[] = process.argv): Promise<void> => {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed the message (or the help / version).
      process.exitCode =
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.version" ||
        err.code === "commander.help"
          ? ExitCode.Ok
          : ExitCode.Failed;
      return;
    }
    const message =
      err instanceof HsmfleetError ? err.message : `unexpected error: ${errorMessage(err)}`;
    process.stderr.write(`hsmfleet: ${message}\n`);
    if (
      !(err instanceof HsmfleetError) &&
      process.env["HSMFLEET_LOG_LEVEL"] === "debug" &&
      err instanceof Error
    ) {
      process.stderr.write(`${err.stack}\n`);
    }
    process.exitCode = ExitCode.Failed;
  } finally {
    // Spans and metrics still buffered go out before the process ends.
    await shutdownTelemetry();
  }
};
