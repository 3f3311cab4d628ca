import type { Command } from "commander";
import { openContainer } from "@hsmfleet/blob";
import { formatBytes } from "@hsmfleet/protocol";
import { loadPolicyFile, servePolicies } from "@hsmfleet/coordinator";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode } from "./context.js";
import type { CliContext } from "./context.js";

/** `hsmfleet policy serve --policies FILE`: every policy's triggers, continuously, until SIGTERM. */
export const registerPolicyServeCommand = (ctx: CliContext, policy: Command): void => {
  policy
    .command("serve")
    .description(
      "evaluate the policies' triggers continuously (periodic, usage watermarks, deletions on the sync change stream) and run them; stops cleanly on SIGTERM",
    )
    .requiredOption("--policies <file>", "policy file (YAML, docs/policies.md)")
    .action(async (opts: { policies: string }) => {
      const file = await loadPolicyFile(opts.policies);
      const g = ctx.globals();
      const log = ctx.logger("coordinator");
      const stateDir = resolveStateDir(g.stateDir);
      const needsStorage =
        file.settings.backend === "hsm-emulation" &&
        file.policies.some((p) => p.action !== "release");
      const storage = needsStorage ? await ctx.resolveStorage(stateDir) : undefined;
      const runtime = await openRuntime(
        ctx.runtimeOptions({ stateDir, logger: log, storage: storage?.target }),
      );
      const abort = new AbortController();
      const stop = () => {
        log.info("policy serve: stopping");
        abort.abort();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      try {
        await servePolicies({
          nc: runtime.nc,
          file,
          container: storage ? openContainer(storage.target, file.settings.container) : undefined,
          signal: abort.signal,
          logger: log,
          onRun: (trigger, s) =>
            process.stdout.write(
              `${new Date().toISOString()} policy ${s.policy} (${trigger}): ${s.done} done, ${s.skipped} skipped, ${s.failed} failed, ${formatBytes(s.bytesDone)}; stopped by ${s.stoppedBy}${s.suspended ? `; SUSPENDED: ${s.suspendReason}` : ""}\n`,
            ),
          onUsage: (name, samples) =>
            log.info(
              { policy: name, usage: samples.map((u) => `${u.target} ${u.percent.toFixed(1)}%`) },
              "usage",
            ),
        });
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        await runtime.close();
        await storage?.azurite?.close();
      }
      process.exitCode = ExitCode.Ok;
    });
};
