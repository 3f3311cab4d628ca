import { join, resolve } from "node:path";
import { mkdir } from "node:fs/promises";
import { Command, InvalidArgumentError, Option } from "commander";
import { connectBus } from "@hsmfleet/bus";
import { HsmfleetError, UsageError, displayPath, errorMessage } from "@hsmfleet/core";
import {
  FleetWatch,
  buildExportSummary,
  buildScanSummary,
  cancelJob,
  formatExportSummary,
  runExportJob,
  checkScanRoot,
  formatScanSummary,
  newJobId,
  openJobStore,
  resumeScanJob,
  runScanJob,
} from "@hsmfleet/coordinator";
import type { ScanSummary } from "@hsmfleet/coordinator";
import { JobKind, formatBytes, jobStateName } from "@hsmfleet/protocol";
import { describeStorageTarget, parseStorageTarget } from "@hsmfleet/blob/targets";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import type { JobStatus } from "@hsmfleet/protocol";
import { createLogger } from "@hsmfleet/telemetry";
import { Worker } from "@hsmfleet/worker";
import { startEmbeddedNats } from "./embedded-nats.js";
import { startEmbeddedAzurite } from "./embedded-azurite.js";
import type { EmbeddedAzurite } from "./embedded-azurite.js";
import { parseSize } from "./size.js";
import { ProgressLine } from "./progress.js";
import { defaultWorkerCount, openRuntime } from "./runtime.js";
import { resolveStateDir } from "./state-dir.js";

/** Exit codes: 0 success; 1 finished with errors; 2 bad usage or could not start; 130 cancelled. */
export const ExitCode = { Ok: 0, WithErrors: 1, Failed: 2, Cancelled: 130 } as const;

interface GlobalOptions {
  nats?: string;
  storage?: string;
  stateDir?: string;
  workers?: number;
  logLevel?: string;
}

const intArg =
  (name: string, min: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };

const kindName = (kind: JobKind): string =>
  (
    ({ 1: "scan", 2: "export", 3: "import", 4: "restore", 5: "hsm", 6: "verify" }) as Record<
      number,
      string
    >
  )[kind] ?? "job";

const describeJob = (s: JobStatus): string => {
  const c = s.scan;
  const entries = c.files + c.directories + c.symlinks + c.other;
  // Exports show what they moved; scans what they saw.
  const bytes = s.spec.kind === JobKind.Export ? s.export.bytesExported : c.bytes;
  const started = new Date(s.startedAtMs).toISOString().replace("T", " ").slice(0, 19);
  return `${s.spec.jobId.padEnd(30)} ${kindName(s.spec.kind).padEnd(8)} ${jobStateName(s.state).padEnd(10)} ${started}Z  ${entries.toLocaleString("en-US").padStart(12)} entries  ${formatBytes(bytes).padStart(10)}  ${displayPath(s.spec.root)}`;
};

/** First Ctrl-C/SIGTERM cancels the job cleanly; a second one quits at once. Returns the undo. */
const onInterrupt = (abort: AbortController, what: string): (() => void) => {
  let interrupts = 0;
  const handler = () => {
    interrupts++;
    if (interrupts > 1) process.exit(ExitCode.Cancelled);
    process.stderr.write(`\ncancelling the ${what} (Ctrl-C again to quit at once)…\n`);
    abort.abort();
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
};

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
      new Option("--log-level <level>", "log level: fatal, error, warn, info, debug, trace")
        .env("HSMFLEET_LOG_LEVEL")
        .default("warn"),
    )
    .showHelpAfterError();

  const globals = (): GlobalOptions => {
    const g = program.opts<GlobalOptions>();
    // An empty --nats / HSMFLEET_NATS_URL means "not given": use the embedded default.
    return { ...g, nats: g.nats === "" ? undefined : g.nats };
  };
  const logger = (role: string) => createLogger({ role, level: globals().logLevel });

  program
    .command("scan")
    .description(
      "walk a directory tree across the fleet and summarise it: counts, bytes, size histogram, HSM states",
    )
    .argument("[path]", "directory to scan (mounted at the same path on every worker VM)")
    .option("--json", "print the summary as one JSON object on stdout")
    .option(
      "--list <file>",
      "write every entry (path, type, size, mtime, mode, uid, gid, HSM flags) as NDJSON",
    )
    .option(
      "--errors <file>",
      "write every error as NDJSON (default: <state-dir>/jobs/<job>/errors.ndjson)",
    )
    .option(
      "--hsm-xattr <name>",
      "xattr holding struct hsm_attrs ('' to skip HSM states)",
      "trusted.hsm",
    )
    .option("--resume <job>", "continue a scan whose coordinator stopped (crash, lost connection)")
    .option("--quiet", "no progress line")
    .action(
      async (
        path: string | undefined,
        opts: {
          json?: boolean;
          list?: string;
          errors?: string;
          hsmXattr: string;
          resume?: string;
          quiet?: boolean;
        },
      ) => {
        if (!path && !opts.resume) throw new UsageError("scan needs a path (or --resume JOB)");
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        if (path) await checkScanRoot(path);
        const runtime = await openRuntime({
          nats: g.nats,
          stateDir,
          workers: g.workers,
          logger: log,
        });
        const progress = new ProgressLine();
        const abort = new AbortController();
        let interrupts = 0;
        const onSigint = () => {
          interrupts++;
          if (interrupts > 1) process.exit(ExitCode.Cancelled);
          process.stderr.write("\ncancelling the scan (Ctrl-C again to quit at once)…\n");
          abort.abort();
        };
        process.on("SIGINT", onSigint);
        process.on("SIGTERM", onSigint);
        let summary: ScanSummary;
        try {
          const common = {
            nc: runtime.nc,
            logger: log,
            signal: abort.signal,
            onProgress: opts.quiet
              ? undefined
              : (p: Parameters<ProgressLine["scan"]>[0]) => progress.scan(p),
          };
          if (opts.resume) {
            summary = await resumeScanJob({ ...common, jobId: opts.resume });
          } else {
            const jobId = newJobId("scan");
            const jobDir = join(stateDir, "jobs", jobId);
            await mkdir(jobDir, { recursive: true });
            summary = await runScanJob({
              ...common,
              root: resolve(path!),
              jobId,
              listFile: opts.list ? resolve(opts.list) : undefined,
              errorLog: opts.errors ? resolve(opts.errors) : join(jobDir, "errors.ndjson"),
              hsmXattr: opts.hsmXattr,
            });
          }
        } finally {
          progress.done();
          process.off("SIGINT", onSigint);
          process.off("SIGTERM", onSigint);
          await runtime.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatScanSummary(summary)}\n`,
        );
        process.exitCode =
          summary.state === "cancelled"
            ? ExitCode.Cancelled
            : summary.errors > 0
              ? ExitCode.WithErrors
              : ExitCode.Ok;
      },
    );

  /** --storage, else AZURE_STORAGE_CONNECTION_STRING, else the embedded Azurite. */
  const resolveStorage = async (
    stateDir: string,
  ): Promise<{ target: StorageTarget; azurite?: EmbeddedAzurite }> => {
    const given = parseStorageTarget(globals().storage, process.env);
    if (given) return { target: given };
    const azurite = await startEmbeddedAzurite({ stateDir });
    process.stderr.write(
      `no --storage or AZURE_STORAGE_CONNECTION_STRING: using a local Azurite at ${azurite.blobEndpoint} (data in ${join(stateDir, "azurite")})\n`,
    );
    return { target: parseStorageTarget(azurite.connectionString)!, azurite };
  };

  program
    .command("export")
    .description(
      "copy a tree into a blob container in AMLFS format (names, owners, modes, times, directories, symlinks); incremental",
    )
    .argument("<path>", "directory to export (mounted at the same path on every worker VM)")
    .requiredOption("--container <name>", "target container (created if missing)")
    .option("--prefix <prefix>", "name prefix inside the container", "")
    .option(
      "--max-errors <n>",
      "errors tolerated: 0 = fail on the first (default), -1 = unlimited, N",
      intArg("--max-errors", -1),
      0,
    )
    .option(
      "--log-container <name>",
      "container for <job>/summary.json and <job>/errors.ndjson (default <container>-logs)",
    )
    .option(
      "--block-size <size>",
      "block size for large files (grown to fit 50,000 blocks)",
      parseSize,
      8 * 1024 * 1024,
    )
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--quiet", "no progress line")
    .action(
      async (
        path: string,
        opts: {
          container: string;
          prefix: string;
          maxErrors: number;
          logContainer?: string;
          blockSize: number;
          json?: boolean;
          quiet?: boolean;
        },
      ) => {
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        await checkScanRoot(path, "export source");
        const storage = await resolveStorage(stateDir);
        log.info({ storage: describeStorageTarget(storage.target) }, "storage");
        const progress = new ProgressLine();
        const abort = new AbortController();
        const restore = onInterrupt(abort, "export");
        let summary: Awaited<ReturnType<typeof runExportJob>>;
        let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
        try {
          runtime = await openRuntime({
            nats: g.nats,
            stateDir,
            workers: g.workers,
            logger: log,
            storage: storage.target,
          });
          const jobId = newJobId("export");
          const jobDir = join(stateDir, "jobs", jobId);
          await mkdir(jobDir, { recursive: true });
          summary = await runExportJob({
            nc: runtime.nc,
            root: resolve(path),
            container: opts.container,
            prefix: opts.prefix,
            storage: storage.target,
            maxErrors: opts.maxErrors,
            logContainer: opts.logContainer,
            blockSizeBytes: opts.blockSize,
            errorLog: join(jobDir, "errors.ndjson"),
            jobId,
            logger: log,
            signal: abort.signal,
            onProgress: opts.quiet ? undefined : (p) => progress.export(p),
          });
        } finally {
          progress.done();
          restore();
          await runtime?.close();
          await storage.azurite?.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatExportSummary(summary)}\n`,
        );
        process.exitCode =
          summary.state === "cancelled"
            ? ExitCode.Cancelled
            : summary.state === "failed"
              ? ExitCode.Failed
              : summary.errors > 0
                ? ExitCode.WithErrors
                : ExitCode.Ok;
      },
    );

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
    .option(
      "--memory-budget <size>",
      "bytes this worker may hold in block buffers",
      parseSize,
      512 * 1024 * 1024,
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
        if (!g.nats)
          throw new UsageError(
            "hsmfleet worker needs --nats URL (or HSMFLEET_NATS_URL): the server the coordinator uses",
          );
        const log = createLogger({
          role: "worker",
          level: g.logLevel === "warn" ? "info" : g.logLevel,
        });
        const storage = parseStorageTarget(g.storage, process.env);
        if (!storage) {
          log.warn(
            "no --storage or AZURE_STORAGE_CONNECTION_STRING: this worker takes scan work only, no transfers",
          );
        }
        const nc = await connectBus({
          servers: g.nats,
          name: `hsmfleet-worker-${opts.vmName ?? ""}`,
        });
        const worker = await Worker.create({
          nc,
          storage,
          bindAddress: opts.bind,
          memoryBudgetBytes: opts.memoryBudget,
          concurrency: opts.concurrency,
          vmName: opts.vmName,
          workerId: opts.workerId,
          shutdownGraceMs: opts.shutdownGrace,
          logger: log,
        });
        let stopping = false;
        const onSignal = () => {
          if (stopping) process.exit(ExitCode.WithErrors);
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

  const withStore = async <T>(
    fn: (
      store: Awaited<ReturnType<typeof openJobStore>>,
      nc: Awaited<ReturnType<typeof connectBus>>,
    ) => Promise<T>,
  ): Promise<T> => {
    const g = globals();
    const embedded = g.nats
      ? undefined
      : await startEmbeddedNats({ stateDir: resolveStateDir(g.stateDir) });
    const nc = await connectBus({
      servers: g.nats ?? embedded!.url,
      name: "hsmfleet-cli",
      reconnectForever: false,
    });
    try {
      return await fn(await openJobStore(nc), nc);
    } finally {
      await nc.drain().catch(() => nc.close());
      await embedded?.close();
    }
  };

  program
    .command("jobs")
    .description("list jobs, newest first")
    .option("--json", "one JSON array on stdout")
    .action(async (opts: { json?: boolean }) => {
      await withStore(async (store) => {
        const jobs = await store.list();
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(jobs.map((s) => ({ ...buildScanSummary(s), kind: kindName(s.spec.kind) })))}\n`,
          );
        } else if (jobs.length === 0) {
          process.stdout.write("no jobs\n");
        } else {
          process.stdout.write(
            `${"JOB".padEnd(30)} ${"KIND".padEnd(8)} ${"STATE".padEnd(10)} STARTED\n`,
          );
          for (const s of jobs) process.stdout.write(`${describeJob(s)}\n`);
        }
      });
    });

  program
    .command("status")
    .description("show one job: state, counters, errors")
    .argument("<job>", "job id (from hsmfleet jobs)")
    .option("--json", "print as JSON")
    .action(async (jobId: string, opts: { json?: boolean }) => {
      await withStore(async (store) => {
        const status = await store.require(jobId);
        if (status.spec.kind === JobKind.Export) {
          const summary = buildExportSummary(status);
          process.stdout.write(
            opts.json
              ? `${JSON.stringify({ ...summary, kind: "export", outstanding: status.published - status.completed })}\n`
              : `${formatExportSummary(summary)}\n`,
          );
          return;
        }
        const summary = buildScanSummary(status);
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ ...summary, kind: kindName(status.spec.kind), outstanding: status.published - status.completed })}\n`,
          );
        } else {
          process.stdout.write(`${formatScanSummary(summary)}\n`);
          if (status.state === 2)
            process.stdout.write(
              `  ${(status.published - status.completed).toLocaleString("en-US")} directories queued\n`,
            );
        }
      });
    });

  program
    .command("cancel")
    .description("stop a running job; its queued work is dropped")
    .argument("<job>", "job id")
    .action(async (jobId: string) => {
      await withStore(async (_store, nc) => {
        const status = await cancelJob(nc, jobId);
        process.stdout.write(
          `${jobId}: ${jobStateName(status.state)}${status.reason ? ` (${status.reason})` : ""}\n`,
        );
      });
    });

  program
    .command("workers")
    .description("list the workers sending heartbeats (listens for a few seconds)")
    .option("--wait <ms>", "how long to listen", intArg("--wait", 0), 6000)
    .option("--json", "print as JSON")
    .action(async (opts: { wait: number; json?: boolean }) => {
      await withStore(async (_store, nc) => {
        const fleet = new FleetWatch(nc);
        await new Promise((r) => setTimeout(r, opts.wait));
        const live = fleet.live();
        fleet.stop();
        if (opts.json) process.stdout.write(`${JSON.stringify(live)}\n`);
        else if (live.length === 0) process.stdout.write("no workers seen\n");
        else
          for (const w of live)
            process.stdout.write(
              `${w.workerId.padEnd(36)} vm=${w.vmName} pid=${w.pid} in-flight=${w.itemsInFlight} done=${w.itemsDone} rss=${formatBytes(w.rssBytes)}\n`,
            );
      });
    });

  program
    .command("server")
    .description(
      "run the embedded nats-server in the foreground, so workers and commands on this machine share it",
    )
    .action(async () => {
      const g = globals();
      const nats = await startEmbeddedNats({
        stateDir: resolveStateDir(g.stateDir),
        logger: logger("server"),
      });
      if (!nats.owned)
        throw new UsageError(
          `an embedded nats-server is already running (pid ${nats.pid}) at ${nats.url}`,
        );
      process.stdout.write(
        `nats-server at ${nats.url} (state in ${resolveStateDir(g.stateDir)}); Ctrl-C stops it\n`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await nats.close();
    });

  return program;
};

/** Runs the CLI; errors become one clear line on stderr and an exit code. */
export const main = async (argv: string[] = process.argv): Promise<void> => {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
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
  }
};
