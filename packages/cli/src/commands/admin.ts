import type { JobStatus } from "@hsmfleet/protocol";
import { displayPath, formatNumber } from "@hsmfleet/core";
import { CANCEL_DEFAULTS, FleetWatch, cancelJob, jobReport } from "@hsmfleet/coordinator";
import { formatBytes, jobStateName } from "@hsmfleet/protocol";
import { ExitCode, intArg } from "./context.js";
import type { CliContext } from "./context.js";
import { formatTable } from "../table.js";
import type { Column } from "../table.js";

const JOB_COLUMNS: readonly Column[] = [
  { heading: "JOB" },
  { heading: "KIND" },
  { heading: "STATE" },
  { heading: "STARTED (UTC)" },
  { heading: "ENTRIES", align: "right" },
  // What the kind counts: files, blobs, items (its report's unit).
  { heading: "UNIT" },
  { heading: "BYTES", align: "right" },
  { heading: "ROOT" },
];

/** One row of `hsmfleet jobs`: the entries and bytes in the kind's own counters (its report). */
const jobRow = (s: JobStatus): string[] => {
  const report = jobReport(s.spec.kind);
  const { count, unit, bytes } = report.counts(s);
  const started = new Date(s.startedAtMs).toISOString().replace("T", " ").slice(0, 19);
  return [
    s.spec.jobId,
    report.name,
    jobStateName(s.state),
    started,
    formatNumber(count),
    unit,
    formatBytes(bytes),
    displayPath(s.spec.root),
  ];
};

/** One element of `hsmfleet jobs --json`. */
const listed = (s: JobStatus): object => {
  const report = jobReport(s.spec.kind);
  return { ...report.listing(s), kind: report.name };
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
          process.stdout.write(`${JSON.stringify(jobs.map(listed))}\n`);
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
        // Each kind shows its own counters (see the coordinator's job-reports.ts).
        const report = jobReport(status.spec.kind);
        process.stdout.write(
          opts.json
            ? `${JSON.stringify({ ...report.summary(status), kind: report.name, outstanding })}\n`
            : `${report.text(status)}\n`,
        );
      });
    });

  program
    .command("cancel")
    .description(
      "stop a running job of any kind: its queued work is dropped, the items in flight stop and report what they finished; exit 0 only once it is cancelled",
    )
    .argument("<job>", "job id")
    .action(async (jobId: string) => {
      await withStore(async (_store, nc) => {
        const { status, outcome } = await cancelJob(nc, jobId);
        const state = jobStateName(status.state);
        if (outcome === "coordinator" || outcome === "takeover") {
          process.stdout.write(`${jobId}: ${state}${status.reason ? ` (${status.reason})` : ""}\n`);
          return;
        }
        process.stderr.write(
          outcome === "ended"
            ? `hsmfleet: job ${jobId} ended (${state}${status.reason ? `: ${status.reason}` : ""}) before the cancel took effect\n`
            : `hsmfleet: job ${jobId} is still ${state}: its coordinator (${status.coordinator || "unknown"}) has not finished cancelling in ${Math.round((CANCEL_DEFAULTS.answerMs + CANCEL_DEFAULTS.finishMs) / 1000)} s; see hsmfleet status ${jobId}\n`,
        );
        process.exitCode = ExitCode.Failed;
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
