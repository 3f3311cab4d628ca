import type { Command } from "commander";
import { UsageError } from "@hsmfleet/core";
import { findPolicy, formatPolicyRun, loadPolicyFile, runPolicy } from "@hsmfleet/coordinator";
import type { PolicyRunSummary } from "@hsmfleet/coordinator";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet policy run NAME --dry-run|--execute --policies FILE`: one run now. */
export const registerPolicyRunCommand = (ctx: CliContext, policy: Command): void => {
  policy
    .command("run")
    .description(
      "run one policy now: a distributed evaluation walk, then (with --execute) its actions through the HSM pipeline",
    )
    .argument("<name>", "the policy's name in the policy file")
    .requiredOption("--policies <file>", "policy file (YAML, docs/policies.md)")
    .option("--dry-run", "evaluate and print what would be done; change nothing")
    .option("--execute", "carry the actions out")
    .option("--json", "print the run's summary as one JSON object")
    .option("-v, --verbose", "print each action's outcome")
    .action(
      async (
        name: string,
        opts: {
          policies: string;
          dryRun?: boolean;
          execute?: boolean;
          json?: boolean;
          verbose?: boolean;
        },
      ) => {
        if (opts.dryRun === opts.execute)
          throw new UsageError("policy run needs exactly one of --dry-run and --execute");
        const file = await loadPolicyFile(opts.policies);
        const p = findPolicy(file, name);
        const g = ctx.globals();
        const log = ctx.logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        const needsStorage =
          opts.execute === true &&
          p.action === "archive" &&
          file.settings.backend === "hsm-emulation";
        const storage = needsStorage ? await ctx.resolveStorage(stateDir) : undefined;
        const abort = new AbortController();
        const undo = onInterrupt(abort, `policy run ${name}`);
        let summary: PolicyRunSummary;
        const runtime = await openRuntime(
          ctx.runtimeOptions({ stateDir, logger: log, storage: storage?.target }),
        );
        try {
          summary = await runPolicy({
            nc: runtime.nc,
            file,
            name,
            execute: opts.execute === true,
            signal: abort.signal,
            logger: log,
            onAction: opts.verbose
              ? (path, status, error) =>
                  process.stdout.write(`${path}: ${status}${error ? ` (${error})` : ""}\n`)
              : undefined,
          });
        } finally {
          undo();
          await runtime.close();
          await storage?.azurite?.close();
        }
        process.stdout.write(
          opts.json ? `${JSON.stringify(summary)}\n` : `${formatPolicyRun(summary)}\n`,
        );
        process.exitCode = abort.signal.aborted
          ? ExitCode.Cancelled
          : summary.failed > 0 || summary.suspended
            ? ExitCode.WithErrors
            : ExitCode.Ok;
      },
    );
};
