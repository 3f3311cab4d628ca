import { connectBus, describeBusAuth } from "@hsmfleet/bus";
import { UsageError } from "@hsmfleet/core";
import { parseStorageTarget } from "@hsmfleet/blob/targets";
import { createLogger } from "@hsmfleet/telemetry";
import { Worker } from "@hsmfleet/worker";
import { findEmbeddedAzurite } from "../embedded-azurite.js";
import { findEmbeddedNats } from "../embedded-nats.js";
import { sizeOption } from "../size.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet worker`: one standalone worker (what each VM runs). */
export const registerWorkerCommand = (ctx: CliContext): void => {
  const { program, globals } = ctx;
  program
    .command("worker")
    .description(
      "run one standalone worker (what each VM of the fleet runs); stops cleanly on SIGTERM",
    )
    .option("--concurrency <n>", "work items in flight at once", intArg("--concurrency", 1), 16)
    .option("--vm-name <name>", "name of this VM in heartbeats (default: host name)")
    .option("--worker-id <id>", "unique id (default: <vm>-<pid>-<random>)")
    .option(
      "--bind <address>",
      "source address for storage connections (one NIC of a multi-NIC VM)",
    )
    .addOption(
      sizeOption(
        "--memory-budget <size>",
        "bytes this worker may hold in block buffers",
        512 * 1024 * 1024,
      ),
    )
    .option(
      "--shutdown-grace <ms>",
      "on SIGTERM, wait this long for in-flight items",
      intArg("--shutdown-grace", 0),
      30_000,
    )
    .action(
      async (opts: {
        concurrency: number;
        vmName?: string;
        workerId?: string;
        shutdownGrace: number;
        bind?: string;
        memoryBudget: number;
      }) => {
        const g = globals();
        const log = createLogger({
          role: "worker",
          level: g.logLevel === "warn" ? "info" : g.logLevel,
        });
        // Like every other command: without --nats, the local `hsmfleet server` (or the
        // embedded server of a command running here) with the same state dir. A worker never
        // starts a server of its own: it would be alone on it.
        const stateDir = resolveStateDir(g.stateDir);
        const local = g.nats ? undefined : await findEmbeddedNats(stateDir);
        const natsUrl = g.nats ?? local?.url;
        if (natsUrl === undefined)
          throw new UsageError(
            `hsmfleet worker needs --nats URL (or HSMFLEET_NATS_URL), or start \`hsmfleet server\` on this machine (state dir ${stateDir}) for the embedded default`,
          );
        if (local) log.info({ url: local.url, pid: local.pid }, "using the local hsmfleet server");
        let storage = parseStorageTarget(g.storage, process.env);
        if (!storage && local) {
          // The embedded default's Azurite, while a command on this machine runs it.
          const azurite = await findEmbeddedAzurite(stateDir);
          if (azurite) {
            storage = parseStorageTarget(azurite.connectionString);
            log.info({ endpoint: azurite.blobEndpoint }, "using the local Azurite");
          }
        }
        if (!storage) {
          log.warn(
            "no --storage or AZURE_STORAGE_CONNECTION_STRING: this worker takes scan work only, no transfers",
          );
        }
        const auth = local ? undefined : ctx.natsAuth();
        const nc = await connectBus({
          servers: natsUrl,
          name: `hsmfleet-worker-${opts.vmName ?? ""}`,
          auth,
          // A worker that cannot get in at the start must say so and stop, not retry forever.
          reconnectForever: true,
        });
        log.info({ nats: describeBusAuth(auth) }, "connected to NATS");
        const worker = await Worker.create({
          nc,
          storage,
          bindAddress: opts.bind,
          memoryBudgetBytes: opts.memoryBudget,
          concurrency: opts.concurrency,
          vmName: opts.vmName,
          workerId: opts.workerId,
          shutdownGraceMs: opts.shutdownGrace,
          maxAttempts: g.maxAttempts,
          requestConcurrency: g.requestConcurrency,
          maxRequestConcurrency: g.maxConcurrency,
          logger: log,
        });
        let stopping = false;
        const onSignal = () => {
          if (stopping) {
            // Second signal: abort what is in flight (handed back at once), then leave.
            log.warn("second signal: aborting the items in flight; they go back to the fleet");
            process.exitCode = ExitCode.WithErrors;
            setTimeout(() => process.exit(ExitCode.WithErrors), 3000).unref();
            void worker.abort();
            return;
          }
          stopping = true;
          log.info("SIGTERM: no new items; finishing the ones in flight (signal again to abort)");
          void worker.shutdown();
        };
        process.on("SIGTERM", onSignal);
        process.on("SIGINT", onSignal);
        await worker.run();
        await nc.drain().catch(() => nc.close());
      },
    );
};
