import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { checkScanRoot, formatVerifySummary, newJobId, runVerifyJob } from "@hsmfleet/coordinator";
import type { VerifySummary } from "@hsmfleet/coordinator";
import { DEFAULT_HSM_XATTR } from "@hsmfleet/core";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet verify`: compare a tree with its blobs across the fleet (like dcmp); exit 0 only when identical. */
export const registerVerifyCommand = (ctx: CliContext): void => {
  const { program, globals, logger, resolveStorage } = ctx;
  program
    .command("verify")
    .description(
      "compare a tree with its blobs across the fleet: existence, type, size, modtime, permissions, owner, group (and with --content the data); exit 0 only when identical",
    )
    .argument("<path>", "directory to compare (mounted at the same path on every worker VM)")
    .requiredOption("--container <name>", "container holding the exported tree")
    .option("--prefix <prefix>", "name prefix inside the container", "")
    .option(
      "--content",
      "also compare the data: MD5 of each file against the blob's Content-MD5 (a full download compare when the blob has none)",
    )
    .option(
      "--hsm-xattr <name>",
      "xattr holding struct hsm_attrs: released files are compared by their attributes, their content is not checked",
      DEFAULT_HSM_XATTR,
    )
    .option(
      "--differences <file>",
      "write every difference to this NDJSON file (default: <state-dir>/jobs/<job>/differences.ndjson)",
    )
    .option("--json", "print the summary as one JSON object on stdout")
    .option("--quiet", "no progress line")
    .action(
      async (
        path: string,
        opts: {
          container: string;
          prefix: string;
          content?: boolean;
          hsmXattr: string;
          differences?: string;
          json?: boolean;
          quiet?: boolean;
        },
      ) => {
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        await checkScanRoot(path, "verify source");
        const storage = await resolveStorage(stateDir);
        const abort = new AbortController();
        const restore = onInterrupt(abort, "verify");
        let summary: VerifySummary;
        let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
        try {
          runtime = await openRuntime(
            ctx.runtimeOptions({ stateDir, logger: log, storage: storage.target }),
          );
          // The differences stay beside the job's other local files unless --differences says
          // where: the job's record (`hsmfleet status JOB`) points at a file that exists.
          const jobId = newJobId("verify");
          const jobDir = join(stateDir, "jobs", jobId);
          await mkdir(jobDir, { recursive: true });
          summary = await runVerifyJob({
            jobId,
            nc: runtime.nc,
            root: resolve(path),
            container: opts.container,
            prefix: opts.prefix,
            content: opts.content ?? false,
            hsmXattr: opts.hsmXattr,
            storage: storage.target,
            errorLog: opts.differences
              ? resolve(opts.differences)
              : join(jobDir, "differences.ndjson"),
            logger: log,
            signal: abort.signal,
            onProgress: opts.quiet
              ? undefined
              : (p) =>
                  process.stderr.isTTY &&
                  process.stderr.write(
                    `\r${p.filesCompared} files compared, ${p.contentChecked} content checked, ${p.differences} differences`,
                  ),
          });
        } finally {
          if (!opts.quiet && process.stderr.isTTY) process.stderr.write("\n");
          restore();
          await runtime?.close();
          await storage.azurite?.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatVerifySummary(summary)}\n`,
        );
        process.exitCode =
          summary.state === "cancelled"
            ? ExitCode.Cancelled
            : summary.state === "failed"
              ? ExitCode.Failed
              : summary.identical
                ? ExitCode.Ok
                : ExitCode.WithErrors;
      },
    );
};
