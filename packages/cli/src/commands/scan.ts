import { join, resolve } from "node:path";
import { mkdir } from "node:fs/promises";
import { UsageError } from "@hsmfleet/core";
import {
  checkScanRoot,
  formatScanSummary,
  newJobId,
  resumeScanJob,
  runScanJob,
} from "@hsmfleet/coordinator";
import type { ScanSummary } from "@hsmfleet/coordinator";
import { ProgressLine } from "../progress.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet scan`: a distributed walk and its summary. */
export const registerScanCommand = (ctx: CliContext): void => {
  const { program, globals, logger } = ctx;
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
        // trusted.* xattrs are invisible without root (getxattr answers "no such attribute"): the
        // in-process workers would read every file's HSM state as new. Say so once.
        const uid = process.getuid?.() ?? 0;
        const hsmUnreadable =
          uid !== 0 && opts.hsmXattr.startsWith("trusted.") && g.workers !== 0
            ? `not readable without root (${opts.hsmXattr})`
            : undefined;
        if (hsmUnreadable !== undefined)
          process.stderr.write(
            `hsmfleet: not root (uid ${uid}): ${opts.hsmXattr} cannot be read by this command's workers, so HSM states would all read as new; run as root, or use --hsm-xattr user.hsm with the emulation\n`,
          );
        const runtime = await openRuntime(ctx.runtimeOptions({ stateDir, logger: log }));
        const progress = new ProgressLine();
        const abort = new AbortController();
        const undo = onInterrupt(abort, "scan");
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
          undo();
          await runtime.close();
        }
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(hsmUnreadable ? { ...summary, hsmStatesUnreadable: hsmUnreadable } : summary)}\n`
            : `${formatScanSummary(summary, undefined, hsmUnreadable)}\n`,
        );
        process.exitCode =
          summary.state === "cancelled"
            ? ExitCode.Cancelled
            : summary.errors > 0
              ? ExitCode.WithErrors
              : ExitCode.Ok;
      },
    );
};
