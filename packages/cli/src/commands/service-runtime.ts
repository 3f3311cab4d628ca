import type { Logger } from "@hsmfleet/telemetry";
import { openRuntime } from "../runtime.js";
import type { Runtime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import type { CliContext } from "./context.js";

/**
 * What a long-running service command (autoimport, serve) starts with: its logger, the state dir,
 * the storage target (an embedded Azurite when none is given), the bus runtime, and a signal that
 * SIGTERM or SIGINT aborts. `close` undoes all of it; the caller closes its own clients first.
 */
export interface ServiceRuntime {
  logger: Logger;
  stateDir: string;
  storage: Awaited<ReturnType<CliContext["resolveStorage"]>>;
  runtime: Runtime;
  signal: AbortSignal;
  close(): Promise<void>;
}

export const startServiceRuntime = async (
  ctx: CliContext,
  role: string,
): Promise<ServiceRuntime> => {
  const g = ctx.globals();
  const logger: Logger = ctx.logger(role);
  const stateDir = resolveStateDir(g.stateDir);
  const storage = await ctx.resolveStorage(stateDir);
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  const runtime = await openRuntime(
    ctx.runtimeOptions({ stateDir, logger, storage: storage.target }),
  );
  return {
    logger,
    stateDir,
    storage,
    runtime,
    signal: abort.signal,
    close: async (): Promise<void> => {
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      await runtime.close();
      await storage.azurite?.close();
    },
  };
};
