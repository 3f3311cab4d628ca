import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { newJobId } from "@hsmfleet/coordinator";
import { errorMessage } from "@hsmfleet/core";
import type { StorageTarget } from "@hsmfleet/blob/targets";
import { markStartup } from "@hsmfleet/telemetry";
import type { Logger } from "@hsmfleet/telemetry";
import { ProgressLine } from "../progress.js";
import { openRuntime } from "../runtime.js";
import type { Runtime } from "../runtime.js";
import { resolveStateDir } from "../state-dir.js";
import { ExitCode, onInterrupt } from "./context.js";
import type { CliContext } from "./context.js";
import { openLifecyclePublisher } from "./lifecycle-options.js";
import type { LifecycleFlags, LifecycleJob, LifecyclePublisher } from "./lifecycle-options.js";

/** What every job summary has, for the exit code. */
export interface JobOutcome {
  state: string;
}

export interface JobCommandRun {
  runtime: Runtime;
  storage: StorageTarget;
  logger: Logger;
  jobId: string;
  /** <state-dir>/jobs/<job>: local files of the job (error and conflict logs). */
  jobDir: string;
  signal: AbortSignal;
  progress: ProgressLine;
  /** The job's live counters (its onProgress): a progress lifecycle event, throttled. */
  progressed(p: object): void;
}

/**
 * The frame every data-moving command shares: storage (or the embedded Azurite), the runtime
 * (NATS + in-process workers), Ctrl-C to cancel, the progress line, the summary on stdout (text or
 * --json) and the exit code (0 ok, 1 with errors, 2 failed, 130 cancelled). Everything it started
 * is stopped, whatever happens.
 */
export const runJobCommand = async <S extends JobOutcome>(
  ctx: CliContext,
  o: {
    what: "export" | "import" | "restore";
    json: boolean | undefined;
    run: (r: JobCommandRun) => Promise<S>;
    format: (summary: S) => string;
    errors: (summary: S) => number;
    /** With `--events-topic` (lifecycle-options.ts): the job's lifecycle events go there. */
    events?: { flags: LifecycleFlags; job: LifecycleJob } | undefined;
  },
): Promise<void> => {
  const g = ctx.globals();
  const logger = ctx.logger("coordinator");
  const stateDir = resolveStateDir(g.stateDir);
  markStartup("action");
  const storage = await ctx.resolveStorage(stateDir);
  markStartup("storage");
  const progress = new ProgressLine();
  const abort = new AbortController();
  const undo = onInterrupt(abort, o.what);
  let summary: S;
  let runtime: Runtime | undefined;
  let events: LifecyclePublisher | undefined;
  try {
    runtime = await openRuntime(ctx.runtimeOptions({ stateDir, logger, storage: storage.target }));
    markStartup("runtime");
    const jobId = newJobId(o.what);
    const jobDir = join(stateDir, "jobs", jobId);
    await mkdir(jobDir, { recursive: true });
    if (o.events) {
      events = await openLifecyclePublisher(o.events.flags, o.events.job, jobId, logger);
      if (events) events.life.jobId = jobId;
      await events?.life.started();
    }
    const life = events?.life;
    try {
      summary = await o.run({
        runtime,
        storage: storage.target,
        logger,
        jobId,
        jobDir,
        signal: abort.signal,
        progress,
        progressed: (p) => life?.progress({ ...p }),
      });
    } catch (err) {
      // Could not start or broke down (a job that ended failed has a summary): reported.
      await life?.failed(errorMessage(err));
      throw err;
    }
    markStartup("job-done");
    await life?.ended(summary as unknown as S & Record<string, unknown>, o.errors(summary));
  } finally {
    progress.done();
    undo();
    await events?.close();
    await runtime?.close();
    await storage.azurite?.close();
    markStartup("closed");
  }
  process.stdout.write(o.json ? `${JSON.stringify(summary)}\n` : `${o.format(summary)}\n`);
  process.exitCode =
    summary.state === "cancelled"
      ? ExitCode.Cancelled
      : summary.state === "failed"
        ? ExitCode.Failed
        : o.errors(summary) > 0
          ? ExitCode.WithErrors
          : ExitCode.Ok;
};
