import { resolve } from "node:path";
import {
  LustreChangelogSource,
  SYNC_DEFAULTS,
  checkScanRoot,
  runSyncService,
} from "@hsmfleet/coordinator";
import { UsageError } from "@hsmfleet/core";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { parseDuration } from "../duration.js";
import { openRuntime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";

const seconds = (ms: number): string => `${ms / 1000}s`;

/** `hsmfleet sync`: a long-running service keeping a container in step with a tree. */
export const registerSyncCommand = (ctx: CliContext): void => {
  const { program, globals, logger, resolveStorage } = ctx;
  program
    .command("sync")
    .description(
      "keep a container in step with a tree, continuously (a long-running service): changes from kernel events (posix) are coalesced per path and applied by the workers; see docs/sync.md",
    )
    .argument("<path>", "directory to keep in step (mounted at the same path on every worker VM)")
    .requiredOption("--container <name>", "container to keep in step")
    .option("--prefix <prefix>", "name prefix inside the container", "")
    .option("--name <name>", "service name (KV keys, change subject; default: from the container)")
    .option(
      "--settle <duration>",
      "upload a new or changed file once it has been quiet this long",
      seconds(SYNC_DEFAULTS.settleMs),
    )
    .option(
      "--remove-delay <duration>",
      "delete the blob of a deleted entry this long after",
      seconds(SYNC_DEFAULTS.removeDelayMs),
    )
    .option("--no-delete", "never delete blobs (as AMLFS auto-export)")
    .option(
      "--rescan-interval <duration>",
      "compare every directory with its blobs this often",
      seconds(SYNC_DEFAULTS.rescanIntervalMs),
    )
    .option(
      "--source <kind>",
      "change source: posix (kernel events) or lustre (the changelog)",
      "posix",
    )
    .option("--mdt <name>", "lustre: the MDT whose changelog is read (e.g. lustre-MDT0000)")
    .option("--changelog-user <id>", "lustre: the registered changelog user (e.g. cl1)")
    .option("--lustre-mount <path>", "lustre: the file system's mount point (default: <path>)")
    .option("--lfs <path>", "lustre: the lfs binary", "lfs")
    .option("--json", "print the final status as one JSON object on stdout")
    .action(
      async (
        path: string,
        opts: {
          container: string;
          prefix: string;
          name?: string;
          settle: string;
          removeDelay: string;
          delete: boolean;
          rescanInterval: string;
          source: string;
          mdt?: string;
          changelogUser?: string;
          lustreMount?: string;
          lfs: string;
          json?: boolean;
        },
      ) => {
        if (opts.source !== "posix" && opts.source !== "lustre")
          throw new UsageError(`--source ${opts.source}: posix or lustre`);
        if (opts.source === "lustre" && (!opts.mdt || !opts.changelogUser))
          throw new UsageError("--source lustre needs --mdt NAME and --changelog-user ID");
        // Refuse a bad source before anything starts (the embedded Azurite, NATS, workers).
        await checkScanRoot(path, "sync source");
        const g = globals();
        const log = logger("coordinator");
        const stateDir = resolveStateDir(g.stateDir);
        const storage = await resolveStorage(stateDir);
        const abort = new AbortController();
        const restore = onInterrupt(abort, "sync");
        let final: SyncStatusRecord;
        let runtime: Awaited<ReturnType<typeof openRuntime>> | undefined;
        try {
          runtime = await openRuntime(
            ctx.runtimeOptions({ stateDir, logger: log, storage: storage.target }),
          );
          final = await runSyncService({
            nc: runtime.nc,
            root: resolve(path),
            container: opts.container,
            prefix: opts.prefix,
            name: opts.name,
            settleMs: parseDuration(opts.settle),
            removeDelayMs: parseDuration(opts.removeDelay),
            noDelete: !opts.delete,
            rescanIntervalMs: parseDuration(opts.rescanInterval),
            storage: storage.target,
            source:
              opts.source === "lustre"
                ? new LustreChangelogSource({
                    lfsPath: opts.lfs,
                    mdt: opts.mdt!,
                    user: opts.changelogUser!,
                    mount: resolve(opts.lustreMount ?? path),
                    root: resolve(path),
                    logger: log,
                  })
                : undefined,
            logger: log,
            signal: abort.signal,
          });
        } finally {
          restore();
          await runtime?.close();
          await storage.azurite?.close();
        }
        process.stdout.write(
          opts.json
            ? `${JSON.stringify(final)}\n`
            : `sync ${final.name} stopped: ${final.recordsApplied} of ${final.recordsRead} records applied, ${final.filesExported} files exported, ${final.metadataUpdates} metadata updates, ${final.renames} renames, ${final.deletions} deletions, ${final.failures} failures\n`,
        );
        process.exitCode = final.state === "failed" ? ExitCode.Failed : ExitCode.Ok;
      },
    );
};
