import { join, resolve } from "node:path";
import { Option } from "commander";
import {
  CONFLICT_MODES,
  IMPORT_DEFAULTS,
  IMPORT_MODES,
  checkScanRoot,
  formatImportSummary,
  normalizeImportPrefixes,
  runImportJob,
} from "@hsmfleet/coordinator";
import type { ImportSummary } from "@hsmfleet/coordinator";
import { describeStorageTarget, jobLogContainer } from "@hsmfleet/blob/targets";
import type { ConflictMode, ImportMode } from "@hsmfleet/protocol";
import { sizeOption } from "../size.js";
import { intArg } from "./context.js";
import { runJobCommand } from "./job-runner.js";
import { lifecycleOptions } from "./lifecycle-options.js";
import type { LifecycleFlags } from "./lifecycle-options.js";
import type { CliContext } from "./context.js";
import { jobLimitsFrom, maxBandwidthOption, maxRequestsOption } from "./job-limits.js";
import type { JobLimitFlags } from "./job-limits.js";

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `hsmfleet import`: a blob container into a file system, with AMLFS's import-job semantics. */
export const registerImportCommand = (ctx: CliContext): void => {
  const lifecycle = lifecycleOptions();
  const { program } = ctx;
  program
    .command("import")
    .description(
      "bring a blob container (AMLFS/hsmfleet/azcopy layout) into a file system: released HSM stubs (--mode namespace) or data too (--mode full)",
    )
    .argument("<target>", "target directory (mounted at the same path on every worker VM)")
    .requiredOption("--container <name>", "source container")
    .option(
      "--prefix <prefix>",
      "part of the container to import (repeatable; default / = all; overlapping prefixes are refused)",
      collect,
    )
    .addOption(
      new Option("--mode <mode>", "namespace: stubs, no data; full: download the data too")
        .choices(IMPORT_MODES as string[])
        .default(IMPORT_DEFAULTS.mode),
    )
    .addOption(
      new Option("--conflict <mode>", "what to do with entries that already exist")
        .choices(CONFLICT_MODES as string[])
        .default(IMPORT_DEFAULTS.conflict),
    )
    .option("--archive-id <n>", "HSM archive id of the stubs", intArg("--archive-id", 0), 1)
    .addOption(
      new Option(
        "--backend <name>",
        "file-system HSM backend (posix: plain files, --mode full only)",
      )
        .choices(["hsm-emulation", "posix"])
        .default(IMPORT_DEFAULTS.backend),
    )
    .option("--hsm-xattr <name>", "xattr holding struct hsm_attrs", IMPORT_DEFAULTS.hsmXattr)
    .addOption(
      sizeOption(
        "--chunk-size <size>",
        "--mode full: blobs larger than this are split into chunks any worker downloads",
        IMPORT_DEFAULTS.chunkSizeBytes,
      ),
    )
    .option(
      "--max-errors <n>",
      "errors tolerated: 0 = fail on the first (default), -1 = unlimited, N",
      intArg("--max-errors", -1),
      0,
    )
    .option(
      "--log-container <name>",
      "container for <job>/summary.json, errors.ndjson, conflicts.ndjson (default <container>-logs)",
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
        target: string,
        opts: {
          container: string;
          prefix?: string[];
          mode: ImportMode;
          conflict: ConflictMode;
          archiveId: number;
          backend: string;
          hsmXattr: string;
          chunkSize: number;
          maxErrors: number;
          logContainer?: string;
          json?: boolean;
          quiet?: boolean;
        } & JobLimitFlags &
          LifecycleFlags,
      ) => {
        // Refuse bad arguments before anything starts.
        await checkScanRoot(target, "import target");
        normalizeImportPrefixes(opts.prefix);
        jobLogContainer(opts.container, opts.logContainer);
        await runJobCommand<ImportSummary>(ctx, {
          what: "import",
          json: opts.json,
          events: {
            flags: opts,
            job: { kind: "import", path: resolve(target), container: opts.container },
          },
          format: (s) => formatImportSummary(s),
          errors: (s) => s.totalErrors,
          run: (r) => {
            r.logger.info({ storage: describeStorageTarget(r.storage) }, "storage");
            return runImportJob({
              nc: r.runtime.nc,
              target: resolve(target),
              container: opts.container,
              prefixes: opts.prefix,
              mode: opts.mode,
              conflict: opts.conflict,
              archiveId: opts.archiveId,
              backend: opts.backend,
              hsmXattr: opts.hsmXattr,
              chunkSizeBytes: opts.chunkSize,
              limits: jobLimitsFrom(opts),
              storage: r.storage,
              maxErrors: opts.maxErrors,
              logContainer: opts.logContainer,
              errorLog: join(r.jobDir, "errors.ndjson"),
              conflictLog: join(r.jobDir, "conflicts.ndjson"),
              jobId: r.jobId,
              logger: r.logger,
              signal: r.signal,
              onProgress: (p) => {
                if (!opts.quiet) r.progress.import(p);
                r.progressed(p);
              },
            });
          },
        });
      },
    );
};
