import { resolve } from "node:path";
import { Option } from "commander";
import {
  CONFLICT_MODES,
  IMPORT_DEFAULTS,
  checkScanRoot,
  jobReport,
  normalizeImportPrefixes,
  runImportJob,
} from "@hsmfleet/coordinator";
import { describeStorageTarget } from "@hsmfleet/blob/targets";
import { UsageError } from "@hsmfleet/core";
import { JobKind } from "@hsmfleet/protocol";
import type { ConflictMode, ImportMode } from "@hsmfleet/protocol";
import {
  AUTOIMPORT_DEFAULTS,
  AutoImportLedger,
  autoImportJobRecord,
  autoImportJobSpec,
  prepareAutoImportRun,
  describeServiceBus,
  runAutoImportService,
  serviceBusClientFor,
} from "@hsmfleet/worker";
import type { AutoImportStatus } from "@hsmfleet/worker";
import { startServiceRuntime } from "./service-runtime.js";
import { ExitCode, intArg } from "./context.js";
import type { CliContext } from "./context.js";

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

interface AutoImportFlags {
  container: string;
  events: string;
  prefix?: string[];
  conflict: ConflictMode;
  mode: ImportMode;
  enableDeletions?: boolean;
  initialScan: boolean;
  maxErrors: number;
  maxAttempts: number;
  name?: string;
  archiveId: number;
  backend: string;
  hsmXattr: string;
  servicebus?: string;
  servicebusNamespace?: string;
  json?: boolean;
}

/**
 * `hsmfleet autoimport`: a long-running service that follows Blob Storage events (Event Grid ->
 * Service Bus queue) into a file system with AMLFS auto-import semantics (docs/azure-integration.md).
 */
export const registerAutoImportCommand = (ctx: CliContext): void => {
  ctx.program
    .command("autoimport")
    .description(
      "follow Blob Storage events (Event Grid -> Service Bus queue) into a file system, as AMLFS auto-import does (a long-running service; SIGTERM stops it)",
    )
    .argument("<target>", "target directory")
    .requiredOption("--container <name>", "the container whose events are applied")
    .requiredOption("--events <queue>", "Service Bus queue Event Grid delivers the events to")
    .option(
      "--prefix <prefix>",
      "part of the container to follow (repeatable; default all)",
      collect,
    )
    .addOption(
      new Option("--conflict <mode>", "what to do with entries that already exist")
        .choices(CONFLICT_MODES as string[])
        .default("skip"),
    )
    .addOption(
      new Option(
        "--mode <mode>",
        "namespace: BlobCreated makes a released stub; full: it downloads the data",
      )
        .choices(["namespace", "full"])
        .default("namespace"),
    )
    .option("--enable-deletions", "apply BlobDeleted/DirectoryDeleted (files that are not dirty)")
    .option("--no-initial-scan", "skip the full reconciliation import at start")
    .option(
      "--max-errors <n>",
      "errors after which the service stops as Failed (-1 = never)",
      intArg("--max-errors", -1),
      AUTOIMPORT_DEFAULTS.maxErrors,
    )
    .option(
      "--max-attempts <n>",
      "deliveries of a failing message before it is dead-lettered",
      intArg("--max-attempts", 1),
      AUTOIMPORT_DEFAULTS.maxAttempts,
    )
    .option(
      "--name <name>",
      "service name (its progress keys in KV; default autoimport-<container>)",
    )
    .option("--archive-id <n>", "HSM archive id of the stubs", intArg("--archive-id", 0), 1)
    .addOption(
      new Option("--backend <name>", "file-system HSM backend")
        .choices(["hsm-emulation"])
        .default(IMPORT_DEFAULTS.backend),
    )
    .option("--hsm-xattr <name>", "xattr holding struct hsm_attrs", IMPORT_DEFAULTS.hsmXattr)
    .addOption(
      new Option("--servicebus <connection-string>", "Service Bus connection string").env(
        "HSMFLEET_SERVICEBUS_CONNECTION_STRING",
      ),
    )
    .addOption(
      new Option(
        "--servicebus-namespace <fqdn>",
        "Service Bus namespace for Entra ID (DefaultAzureCredential / managed identity)",
      ).env("HSMFLEET_SERVICEBUS_NAMESPACE"),
    )
    .option("--json", "print the final status as one JSON object on stdout")
    .action(async (target: string, opts: AutoImportFlags) => {
      await checkScanRoot(target, "autoimport target");
      normalizeImportPrefixes(opts.prefix);
      const name = opts.name ?? `autoimport-${opts.container}`;
      const sbTarget = { connectionString: opts.servicebus, namespace: opts.servicebusNamespace };
      const service = await startServiceRuntime(ctx, "autoimport");
      const { logger, storage, runtime, signal } = service;
      const client = serviceBusClientFor(sbTarget);
      const startedAtMs = Date.now();
      let status: AutoImportStatus | undefined;
      try {
        logger.info(
          {
            storage: describeStorageTarget(storage.target),
            serviceBus: describeServiceBus(sbTarget),
            queue: opts.events,
          },
          "autoimport starting",
        );
        const ledger = await AutoImportLedger.open(runtime.nc, name);
        // The changes are applied by the fleet's workers (`hsmfleet worker`, or --workers here).
        const spec = autoImportJobSpec({
          name,
          target: resolve(target),
          container: opts.container,
          mode: opts.mode,
          conflict: opts.conflict,
          archiveId: opts.archiveId,
          backend: opts.backend,
          hsmXattr: opts.hsmXattr,
          startedAtMs,
        });
        await prepareAutoImportRun({ nc: runtime.nc, spec, ledger });
        let synced: string | undefined;
        if (opts.initialScan) {
          const scan = await runImportJob({
            nc: runtime.nc,
            target: resolve(target),
            container: opts.container,
            prefixes: opts.prefix,
            mode: opts.mode,
            conflict: opts.conflict,
            archiveId: opts.archiveId,
            backend: opts.backend,
            hsmXattr: opts.hsmXattr,
            storage: storage.target,
            maxErrors: -1,
            logger,
            signal: signal,
          });
          if (scan.state !== "succeeded")
            throw new UsageError(`autoimport ${name}: the initial scan ended ${scan.state}`);
          synced = new Date().toISOString();
          logger.info({ imported: scan.totalBlobsImported }, "initial scan done");
        }
        const receiver = client.createReceiver(opts.events);
        status = await runAutoImportService({
          nc: runtime.nc,
          spec,
          receiver,
          ledger,
          enableDeletions: opts.enableDeletions ?? false,
          prefixes: opts.prefix,
          maxAttempts: opts.maxAttempts,
          maxErrors: opts.maxErrors,
          signal: signal,
          ...(synced ? { lastTimeFullySynchronized: synced } : {}),
          log: (level, message) => logger[level](message),
        });
        await receiver.close();
      } finally {
        await client.close();
        await service.close();
      }
      // The text is `hsmfleet status <name>`'s (the kind's report); --json is the KV status record.
      process.stdout.write(
        opts.json
          ? `${JSON.stringify(status)}\n`
          : `${jobReport(JobKind.AutoImport).text(autoImportJobRecord(status, startedAtMs))}\n`,
      );
      process.exitCode = status.state === "Failed" ? ExitCode.Failed : ExitCode.Ok;
    });
};
