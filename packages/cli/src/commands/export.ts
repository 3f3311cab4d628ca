import { join, resolve } from "node:path";
import { formatExportSummary, runExportJob, checkExportSource } from "@hsmfleet/coordinator";
import type { ExportSummary } from "@hsmfleet/coordinator";
import { describeStorageTarget, jobLogContainer } from "@hsmfleet/blob/targets";
import { sizeOption } from "../size.js";
import { intArg } from "./context.js";
import { runJobCommand } from "./job-runner.js";
import { lifecycleOptions } from "./lifecycle-options.js";
import type { LifecycleFlags } from "./lifecycle-options.js";
import type { CliContext } from "./context.js";
import { jobLimitsFrom, maxBandwidthOption, maxRequestsOption } from "./job-limits.js";
import type { JobLimitFlags } from "./job-limits.js";

/** `hsmfleet export`: a tree to a blob container in AMLFS format. */
export const registerExportCommand = (ctx: CliContext): void => {
  const lifecycle = lifecycleOptions();
  const { program } = ctx;
  program
    .command("export")
    .description(
      "copy a tree into a blob container in AMLFS format (names, owners, modes, times, directories, symlinks); incremental",
    )
    .argument(
      "<path>",
      "directory to export (mounted at the same path on every worker VM), or one file (one blob named by its base name)",
    )
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
    .addOption(
      sizeOption(
        "--block-size <size>",
        "block size for large files (grown to fit 50,000 blocks)",
        8 * 1024 * 1024,
      ),
    )
    .addOption(
      sizeOption(
        "--chunk-size <size>",
        "files larger than this are uploaded in chunks (block ranges) that any worker takes",
        256 * 1024 * 1024,
      ),
    )
    .addOption(maxBandwidthOption())
    .addOption(maxRequestsOption())
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--quiet", "no progress line")
    .addOption(lifecycle[0]!)
    .addOption(lifecycle[1]!)
    .addOption(lifecycle[2]!)
    .addOption(lifecycle[3]!)
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
        } & JobLimitFlags &
          LifecycleFlags,
      ) => {
        await checkExportSource(path);
        jobLogContainer(opts.container, opts.logContainer);
        await runJobCommand<ExportSummary>(ctx, {
          what: "export",
          json: opts.json,
          events: {
            flags: opts,
            job: { kind: "export", path: resolve(path), container: opts.container },
          },
          format: (s) => formatExportSummary(s),
          errors: (s) => s.errors,
          run: (r) => {
            r.logger.info({ storage: describeStorageTarget(r.storage) }, "storage");
            return runExportJob({
              nc: r.runtime.nc,
              root: resolve(path),
              container: opts.container,
              prefix: opts.prefix,
              storage: r.storage,
              maxErrors: opts.maxErrors,
              logContainer: opts.logContainer,
              blockSizeBytes: opts.blockSize,
              chunkSizeBytes: opts.chunkSize,
              limits: jobLimitsFrom(opts),
              errorLog: join(r.jobDir, "errors.ndjson"),
              jobId: r.jobId,
              logger: r.logger,
              signal: r.signal,
              onProgress: (p) => {
                if (!opts.quiet) r.progress.export(p);
                r.progressed(p);
              },
            });
          },
        });
      },
    );
};
