import type { JobStatus } from "@hsmfleet/protocol";
import { displayPath } from "@hsmfleet/core";
import {
  buildImportSummary,
  buildRestoreSummary,
  formatImportSummary,
  formatRestoreSummary,
  FleetWatch,
  buildExportSummary,
  buildScanSummary,
  cancelJob,
  formatExportSummary,
  formatScanSummary,
} from "@hsmfleet/coordinator";
import { JobKind, formatBytes, jobStateName } from "@hsmfleet/protocol";
import { intArg, kindName } from "./context.js";
import type { CliContext } from "./context.js";
import { formatTable } from "../table.js";
import type { Column } from "../table.js";

const JOB_COLUMNS: readonly Column[] = [
  { heading: "JOB" },
  { heading: "KIND" },
  { heading: "STATE" },
  { heading: "STARTED (UTC)" },
  { heading: "ENTRIES", align: "right" },
  { heading: "BYTES", align: "right" },
  { heading: "ROOT" },
];

const jobRow = (s: JobStatus): string[] => {
  const c = s.scan;
  const entries = c.files + c.directories + c.symlinks + c.other;
  // Exports show what they moved; scans what they saw.
  const bytes = s.spec.kind === JobKind.Export ? s.export.bytesExported : c.bytes;
  const started = new Date(s.startedAtMs).toISOString().replace("T", " ").slice(0, 19);
  return [
    s.spec.jobId,
    kindName(s.spec.kind),
    jobStateName(s.state),
    started,
    entries.toLocaleString("en-US"),
    formatBytes(bytes),
    displayPath(s.spec.root),
  ];
};

/** `hsmfleet jobs|status|cancel|workers`: looking at and steering jobs and the fleet. */
export const registerAdminCommands = (ctx: CliContext): void => {
  const { program, withStore } = ctx;
  program
    .command("jobs")
    .description("list jobs, newest first")
    .option("--json", "one JSON array on stdout")
    .action(async (opts: { json?: boolean }) => {
      await withStore(async (store) => {
        const jobs = await store.list();
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify(jobs.map((s) => ({ ...buildScanSummary(s), kind: kindName(s.spec.kind) })))}\n`,
          );
        } else if (jobs.length === 0) {
          process.stdout.write("no jobs\n");
        } else {
          process.stdout.write(`${formatTable(JOB_COLUMNS, jobs.map(jobRow))}\n`);
        }
      });
    });

  program
    .command("status")
    .description("show one job: state, counters, errors")
    .argument("<job>", "job id (from hsmfleet jobs)")
    .option("--json", "print as JSON")
    .action(async (jobId: string, opts: { json?: boolean }) => {
      await withStore(async (store) => {
        const status = await store.require(jobId);
        const outstanding = status.published - status.completed;
        const show = (kind: string, summary: object, text: string) =>
          process.stdout.write(
            opts.json ? `${JSON.stringify({ ...summary, kind, outstanding })}\n` : `${text}\n`,
          );
        if (status.spec.kind === JobKind.Export) {
          const summary = buildExportSummary(status);
          show("export", summary, formatExportSummary(summary));
          return;
        }
        if (status.spec.kind === JobKind.Import) {
          const summary = buildImportSummary(status);
          show("import", summary, formatImportSummary(summary));
          return;
        }
        if (status.spec.kind === JobKind.Restore) {
          const summary = buildRestoreSummary(status);
          show("restore", summary, formatRestoreSummary(summary));
          return;
        }
        const summary = buildScanSummary(status);
        if (opts.json) {
          process.stdout.write(
            `${JSON.stringify({ ...summary, kind: kindName(status.spec.kind), outstanding: status.published - status.completed })}\n`,
          );
        } else {
          process.stdout.write(`${formatScanSummary(summary)}\n`);
          if (status.state === 2)
            process.stdout.write(
              `  ${(status.published - status.completed).toLocaleString("en-US")} directories queued\n`,
            );
        }
      });
    });

  program
    .command("cancel")
    .description("stop a running job; its queued work is dropped")
    .argument("<job>", "job id")
    .action(async (jobId: string) => {
      await withStore(async (_store, nc) => {
        const status = await cancelJob(nc, jobId);
        process.stdout.write(
          `${jobId}: ${jobStateName(status.state)}${status.reason ? ` (${status.reason})` : ""}\n`,
        );
      });
    });

  program
    .command("workers")
    .description("list the workers sending heartbeats (listens for a few seconds)")
    .option("--wait <ms>", "how long to listen", intArg("--wait", 0), 6000)
    .option("--json", "print as JSON")
    .action(async (opts: { wait: number; json?: boolean }) => {
      await withStore(async (_store, nc) => {
        const fleet = new FleetWatch(nc);
        await new Promise((r) => setTimeout(r, opts.wait));
        const live = fleet.live();
        fleet.stop();
        if (opts.json) process.stdout.write(`${JSON.stringify(live)}\n`);
        else if (live.length === 0) process.stdout.write("no workers seen\n");
        else
          for (const w of live)
            process.stdout.write(
              `${w.workerId.padEnd(36)} vm=${w.vmName} pid=${w.pid} in-flight=${w.itemsInFlight} done=${w.itemsDone} requests=${w.requestConcurrency}/${w.maxRequestConcurrency} rss=${formatBytes(w.rssBytes)}\n`,
            );
      });
    });
};
