import { join } from "node:path";
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { connectBus } from "@hsmfleet/bus";
import type { BusAuth, NatsConnection } from "@hsmfleet/bus";
import { openJobStore } from "@hsmfleet/coordinator";
import { parseStorageTarget } from "@hsmfleet/blob/targets";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { createLogger } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { startEmbeddedAzurite } from "../embedded-azurite.js";
import type { EmbeddedAzurite } from "../embedded-azurite.js";
import { startEmbeddedNats } from "../embedded-nats.js";
import { busAuthFrom } from "../nats-options.js";
import type { RuntimeOptions } from "../runtime.js";
import type { NatsAuthGlobals } from "../nats-options.js";
import { resolveStateDir } from "../state-dir.js";

/** Exit codes: 0 success; 1 finished with errors; 2 bad usage or could not start; 130 cancelled. */
export const ExitCode = { Ok: 0, WithErrors: 1, Failed: 2, Cancelled: 130 } as const;

export interface GlobalOptions extends NatsAuthGlobals {
  nats?: string;
  storage?: string;
  stateDir?: string;
  workers?: number;
  logLevel?: string;
  /** Attempts per file for workers this command runs (default: the worker's, 3). */
  maxAttempts?: number;
  /** Storage requests in flight per worker: "auto" (default) or a fixed number. */
  requestConcurrency?: "auto" | number;
  /** Cap of the auto request concurrency (default 64). */
  maxConcurrency?: number;
}

export type JobStoreHandle = Awaited<ReturnType<typeof openJobStore>>;

/** What every command module gets: the program to add itself to and the shared helpers. */
export interface CliContext {
  readonly program: Command;
  /** Global options as given (an empty --nats means the embedded default). */
  readonly globals: () => GlobalOptions;
  readonly logger: (role: string) => Logger;
  /** NATS credentials and TLS from --nats-* / NATS_*; undefined for the embedded server. */
  readonly natsAuth: () => BusAuth | undefined;
  /** --storage, else AZURE_STORAGE_CONNECTION_STRING, else the embedded Azurite (which it starts). */
  readonly resolveStorage: (
    stateDir: string,
  ) => Promise<{ target: StorageTarget; azurite?: EmbeddedAzurite }>;
  /**
   * What `openRuntime` needs from the global options: --nats and its credentials, --workers,
   * --max-attempts, --request-concurrency, --max-concurrency. Every command that runs its own
   * workers takes them from here, so none forgets one (the `hsm` command once connected without
   * the NATS credentials).
   */
  readonly runtimeOptions: (o: {
    stateDir: string;
    logger: Logger;
    storage?: StorageTarget | undefined;
  }) => RuntimeOptions;
  /** Runs `fn` with the job store and a NATS connection (embedded server if no --nats). */
  readonly withStore: <T>(
    fn: (store: JobStoreHandle, nc: NatsConnection) => Promise<T>,
  ) => Promise<T>;
}

export const intArg =
  (name: string, min: number) =>
  (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
    return n;
  };

/** "auto" or an integer ≥ 1 (--request-concurrency). */
export const requestConcurrencyArg = (value: string): "auto" | number =>
  value.trim().toLowerCase() === "auto" ? "auto" : intArg("--request-concurrency", 1)(value);

/** First Ctrl-C/SIGTERM cancels the job cleanly; a second one quits at once. Returns the undo. */
export const onInterrupt = (abort: AbortController, what: string): (() => void) => {
  let interrupts = 0;
  const handler = () => {
    interrupts++;
    if (interrupts > 1) process.exit(ExitCode.Cancelled);
    process.stderr.write(`\ncancelling the ${what} (Ctrl-C again to quit at once)…\n`);
    abort.abort();
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return () => {
    process.off("SIGINT", handler);
    process.off("SIGTERM", handler);
  };
};

export const createCliContext = (program: Command): CliContext => {
  const globals = (): GlobalOptions => {
    const g = program.opts<GlobalOptions>();
    // An empty --nats / HSMFLEET_NATS_URL means "not given": use the embedded default.
    return { ...g, nats: g.nats === "" ? undefined : g.nats };
  };
  const natsAuth = (): BusAuth | undefined => (globals().nats ? busAuthFrom(globals()) : undefined);
  return {
    program,
    globals,
    logger: (role) => createLogger({ role, level: globals().logLevel }),
    natsAuth,
    runtimeOptions: ({ stateDir, logger, storage }) => {
      const g = globals();
      return {
        nats: g.nats,
        auth: natsAuth(),
        stateDir,
        workers: g.workers,
        logger,
        storage,
        maxAttempts: g.maxAttempts,
        requestConcurrency: g.requestConcurrency,
        maxConcurrency: g.maxConcurrency,
      };
    },
    resolveStorage: async (stateDir) => {
      const given = parseStorageTarget(globals().storage, process.env);
      if (given) return { target: given };
      const azurite = await startEmbeddedAzurite({ stateDir });
      process.stderr.write(
        `no --storage or AZURE_STORAGE_CONNECTION_STRING: using a local Azurite at ${azurite.blobEndpoint} (data in ${join(stateDir, "azurite")})\n`,
      );
      return { target: parseStorageTarget(azurite.connectionString)!, azurite };
    },
    withStore: async (fn) => {
      const g = globals();
      const embedded = g.nats
        ? undefined
        : await startEmbeddedNats({ stateDir: resolveStateDir(g.stateDir) });
      const nc = await connectBus({
        servers: g.nats ?? embedded!.url,
        name: "hsmfleet-cli",
        reconnectForever: false,
        auth: g.nats ? busAuthFrom(g) : undefined,
      });
      try {
        return await fn(await openJobStore(nc), nc);
      } finally {
        await nc.drain().catch(() => nc.close());
        await embedded?.close();
      }
    },
  };
};
