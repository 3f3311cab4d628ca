import { UsageError } from "@hsmfleet/core";
import { startEmbeddedNats } from "../embedded-nats.js";
import { resolveStateDir } from "../state-dir.js";
import type { CliContext } from "./context.js";

/** `hsmfleet server`: the embedded nats-server in the foreground. */
export const registerServerCommand = (ctx: CliContext): void => {
  const { program, globals, logger } = ctx;
  program
    .command("server")
    .description(
      "run the embedded nats-server in the foreground, so workers and commands on this machine share it",
    )
    .action(async () => {
      const g = globals();
      const nats = await startEmbeddedNats({
        stateDir: resolveStateDir(g.stateDir),
        logger: logger("server"),
      });
      if (!nats.owned)
        throw new UsageError(
          `an embedded nats-server is already running (pid ${nats.pid}) at ${nats.url}`,
        );
      process.stdout.write(
        `nats-server at ${nats.url} (state in ${resolveStateDir(g.stateDir)}); Ctrl-C stops it\n`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      });
      await nats.close();
    });
};
