import { resolve } from "node:path";
import {
  RESTORE_DEFAULTS,
  checkScanRoot,
  formatRestoreSummary,
  runRestoreJob,
} from "@hsmfleet/coordinator";
import type { RestoreSummary } from "@hsmfleet/coordinator";
import { ProgressLine } from "../progress.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet restore`: bring back the data of released files, in bounded batches across the fleet. */
export const registerRestoreCommand = (ctx: CliContext): void => {
  const { program, globals, logger, resolveStorage } = ctx;
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
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--quiet", "no progress line")
    .action(
      async (
        path: string,
        opts: {
          maxInflight: number;
          hsmXattr: string;
          container?: string;
          fsRoot?: string;
          maxErrors: number;
          json?: boolean;
          quiet?: boolean;
        },
      ) => {
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        await checkScanRoot(path, "restore path");
        const storage = await resolveStorage(stateDir);
        const progress = new ProgressLine();
        const abort = new AbortController();
        const undo = onInterrupt(abort, "restore");
        let summary: RestoreSummary;
        let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
        try {
          runtime = await openRuntime({
            nats: g.nats,
            stateDir,
            workers: g.workers,
            logger: log,
            storage: storage.target,
          });
          summary = await runRestoreJob({
            nc: runtime.nc,
            path: resolve(path),
            maxInflight: opts.maxInflight,
            hsmXattr: opts.hsmXattr,
            container: opts.container,
            fsRoot: opts.fsRoot ? resolve(opts.fsRoot) : undefined,
            maxErrors: opts.maxErrors,
            logger: log,
            signal: abort.signal,
            onProgress: opts.quiet ? undefined : (p) => progress.restore(p),
          });
        } finally {
          progress.done();
          undo();
          await runtime?.close();
          await storage.azurite?.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatRestoreSummary(summary)}\n`,
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
