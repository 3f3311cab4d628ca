import { join, resolve } from "node:path";
import { mkdir } from "node:fs/promises";
import { formatExportSummary, runExportJob, checkScanRoot, newJobId } from "@hsmfleet/coordinator";
import { describeStorageTarget } from "@hsmfleet/blob/targets";
import { parseSize } from "../size.js";
import { ProgressLine } from "../progress.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet export`: a tree to a blob container in AMLFS format. */
export const registerExportCommand = (ctx: CliContext): void => {
  const { program, globals, logger, resolveStorage } = ctx;
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
    .option(
      "--chunk-size <size>",
      "files larger than this are uploaded in chunks (block ranges) that any worker takes",
      parseSize,
      256 * 1024 * 1024,
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
          chunkSize: number;
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
            chunkSizeBytes: opts.chunkSize,
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
};
