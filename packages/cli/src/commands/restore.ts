import { Option } from "commander";
import { join, resolve } from "node:path";
import {
  RESTORE_DEFAULTS,
  checkScanRoot,
  formatRestoreSummary,
  runRestoreJob,
} from "@hsmfleet/coordinator";
import type { RestoreSummary } from "@hsmfleet/coordinator";
import { intArg } from "./context.js";
import { runJobCommand } from "./job-runner.js";
import { lifecycleOptions } from "./lifecycle-options.js";
import type { LifecycleFlags } from "./lifecycle-options.js";
import type { CliContext } from "./context.js";
import { jobLimitsFrom, maxBandwidthOption, maxRequestsOption } from "./job-limits.js";
import type { JobLimitFlags } from "./job-limits.js";

/** `hsmfleet restore`: bring back the data of released files, in bounded batches across the fleet. */
export const registerRestoreCommand = (ctx: CliContext): void => {
  const lifecycle = lifecycleOptions();
  const { program } = ctx;
  program
    .command("restore")
    .description(
      "restore the data of every released file under a path, with at most --max-inflight files in flight across the fleet",
    )
    .argument("<path>", "directory (mounted at the same path on every worker VM)")
    .option(
      "--max-inflight <n>",
      "files being restored at once across the whole fleet",
      intArg("--max-inflight", 1),
      RESTORE_DEFAULTS.maxInflight,
    )
    .option("--hsm-xattr <name>", "xattr holding struct hsm_attrs", RESTORE_DEFAULTS.hsmXattr)
    .addOption(
      new Option(
        "--backend <name>",
        "hsm-emulation: workers download the data; lustre: workers call lfs hsm_restore in batches (each worker's --lfs) and wait for the copytool",
      )
        .choices(["hsm-emulation", "lustre"])
        .default("hsm-emulation"),
    )
    .option(
      "--container <name>",
      "for files without a recorded archive location: the container holding their data",
    )
    .option("--fs-root <dir>", "with --container: the directory that maps to the container root")
    .option(
      "--max-errors <n>",
      "errors tolerated: -1 = unlimited (default), 0 = fail on the first, N",
      intArg("--max-errors", -1),
      RESTORE_DEFAULTS.maxErrors,
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
          maxInflight: number;
          hsmXattr: string;
          backend: "hsm-emulation" | "lustre";
          container?: string;
          fsRoot?: string;
          maxErrors: number;
          json?: boolean;
          quiet?: boolean;
        } & JobLimitFlags &
          LifecycleFlags,
      ) => {
        await checkScanRoot(path, "restore path");
        await runJobCommand<RestoreSummary>(ctx, {
          what: "restore",
          json: opts.json,
          events: {
            flags: opts,
            job: { kind: "restore", path: resolve(path), container: opts.container },
          },
          format: (s) => formatRestoreSummary(s),
          errors: (s) => s.errors,
          run: (r) =>
            runRestoreJob({
              nc: r.runtime.nc,
              path: resolve(path),
              maxInflight: opts.maxInflight,
              hsmXattr: opts.hsmXattr,
              backend: opts.backend,
              container: opts.container,
              fsRoot: opts.fsRoot ? resolve(opts.fsRoot) : undefined,
              maxErrors: opts.maxErrors,
              limits: jobLimitsFrom(opts),
              jobId: r.jobId,
              errorLog: join(r.jobDir, "errors.ndjson"),
              logger: r.logger,
              signal: r.signal,
              onProgress: (p) => {
                if (!opts.quiet) r.progress.restore(p);
                r.progressed(p);
              },
            }),
        });
      },
    );
};
