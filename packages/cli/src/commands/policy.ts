import { PolicyFileError, formatPolicyFile, loadPolicyFile } from "@hsmfleet/coordinator";
import { ExitCode } from "./context.js";
import { registerPolicyRunCommand } from "./policy-run.js";
import { registerPolicyServeCommand } from "./policy-serve.js";
import type { CliContext } from "./context.js";

/** `hsmfleet policy check|run|serve`: Robinhood-style policies (docs/policies.md). */
export const registerPolicyCommand = (ctx: CliContext): void => {
  const policy = ctx.program
    .command("policy")
    .description(
      "archive / release / remove policies: check a policy file, run one, or serve them",
    );
  policy
    .command("check")
    .description("validate a policy file and print the policies as understood (defaults filled in)")
    .argument("<file>", "policy file (YAML, docs/policies.md)")
    .option("--json", "print the resolved policies as JSON")
    .action(async (file: string, opts: { json?: boolean }) => {
      try {
        const f = await loadPolicyFile(file);
        process.stdout.write(
          opts.json ? `${JSON.stringify(f, null, 2)}\n` : `${formatPolicyFile(f)}\n`,
        );
      } catch (err) {
        if (!(err instanceof PolicyFileError)) throw err;
        process.stderr.write(`${err.message}\n`);
        process.exitCode = ExitCode.Failed;
      }
    });
  registerPolicyRunCommand(ctx, policy);
  registerPolicyServeCommand(ctx, policy);
};
