import { join, resolve } from "node:path";
import { mkdir } from "node:fs/promises";
import { Option } from "commander";
import {
  CONFLICT_MODES,
  IMPORT_DEFAULTS,
  IMPORT_MODES,
  checkScanRoot,
  formatImportSummary,
  newJobId,
  normalizeImportPrefixes,
  runImportJob,
} from "@hsmfleet/coordinator";
import type { ImportSummary } from "@hsmfleet/coordinator";
import { describeStorageTarget } from "@hsmfleet/blob/targets";
import type { ConflictMode, ImportMode } from "@hsmfleet/protocol";
import { ProgressLine } from "../progress.js";
import { parseSize } from "../size.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** `hsmfleet import`: a blob container into a file system, with AMLFS's import-job semantics. */
export const registerImportCommand = (ctx: CliContext): void => {
  const { program, globals, logger, resolveStorage } = ctx;
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
    .option(
      "--chunk-size <size>",
      "--mode full: blobs larger than this are split into chunks any worker downloads",
      parseSize,
      IMPORT_DEFAULTS.chunkSizeBytes,
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
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--quiet", "no progress line")
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
        },
      ) => {
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        // Refuse bad arguments before anything starts.
        await checkScanRoot(target, "import target");
        normalizeImportPrefixes(opts.prefix);
        const storage = await resolveStorage(stateDir);
        log.info({ storage: describeStorageTarget(storage.target) }, "storage");
        const progress = new ProgressLine();
        const abort = new AbortController();
        const restore = onInterrupt(abort, "import");
        let summary: ImportSummary;
        let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
        try {
          runtime = await openRuntime({
            nats: g.nats,
            stateDir,
            workers: g.workers,
            logger: log,
            storage: storage.target,
          });
          const jobId = newJobId("import");
          const jobDir = join(stateDir, "jobs", jobId);
          await mkdir(jobDir, { recursive: true });
          summary = await runImportJob({
            nc: runtime.nc,
            target: resolve(target),
            container: opts.container,
            prefixes: opts.prefix,
            mode: opts.mode,
            conflict: opts.conflict,
            archiveId: opts.archiveId,
            backend: opts.backend,
            hsmXattr: opts.hsmXattr,
            chunkSizeBytes: opts.chunkSize,
            storage: storage.target,
            maxErrors: opts.maxErrors,
            logContainer: opts.logContainer,
            errorLog: join(jobDir, "errors.ndjson"),
            conflictLog: join(jobDir, "conflicts.ndjson"),
            jobId,
            logger: log,
            signal: abort.signal,
            onProgress: opts.quiet ? undefined : (p) => progress.import(p),
          });
        } finally {
          progress.done();
          restore();
          await runtime?.close();
          await storage.azurite?.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatImportSummary(summary)}\n`,
        );
        process.exitCode =
          summary.state === "cancelled"
            ? ExitCode.Cancelled
            : summary.state === "failed"
              ? ExitCode.Failed
              : summary.totalErrors > 0
                ? ExitCode.WithErrors
                : ExitCode.Ok;
      },
    );
};
