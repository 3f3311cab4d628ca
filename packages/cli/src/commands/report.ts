import { resolve } from "node:path";
import {
  checkScanRoot,
  formatReport,
  groupLabel,
  loadPolicyFile,
  runReport,
  userLabel,
} from "@hsmfleet/coordinator";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, intArg, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet report PATH`: rbh-report / rbh-du from a distributed scan (docs/policies.md). */
export const registerReportCommand = (ctx: CliContext): void => {
  ctx.program
    .command("report")
    .description(
      "counts and bytes by HSM state, owner, group, file class and size profile, the oldest files and the fullest directories (a distributed scan)",
    )
    .argument("<path>", "directory to report on (mounted at the same path on every worker VM)")
    .option("--policies <file>", "policy file whose file classes to count by")
    .option(
      "--top <n>",
      "length of the oldest-files and top-directories lists",
      intArg("--top", 0),
      20,
    )
    .option("--json", "print the report as one JSON object")
    .action(async (path: string, opts: { policies?: string; top: number; json?: boolean }) => {
      const root = await checkScanRoot(resolve(path), "report root");
      const file = opts.policies ? await loadPolicyFile(opts.policies) : undefined;
      const g = ctx.globals();
      const log = ctx.logger("coordinator");
      const runtime = await openRuntime(
        ctx.runtimeOptions({ stateDir: resolveStateDir(g.stateDir), logger: log }),
      );
      const abort = new AbortController();
      const undo = onInterrupt(abort, "report");
      try {
        const report = await runReport({
          nc: runtime.nc,
          root,
          file,
          top: opts.top,
          signal: abort.signal,
          logger: log,
        });
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(report)}\n`
            : `${formatReport(report, { user: userLabel, group: groupLabel })}\n`,
        );
        process.exitCode =
          report.state === "cancelled"
            ? ExitCode.Cancelled
            : report.errors > 0
              ? ExitCode.WithErrors
              : ExitCode.Ok;
      } finally {
        undo();
        await runtime.close();
      }
    });
};
