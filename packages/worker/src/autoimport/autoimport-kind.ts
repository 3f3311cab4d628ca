/**
 * Autoimport on the fleet: the batches of blob changes a running `hsmfleet autoimport` service
 * publishes (protocol autoimport-item.ts), pulled from its own consumer `autoimport-<job>`, applied
 * with AMLFS auto-import semantics (apply-blob-change.ts, the import job's code), their result sent
 * back to the service under `<batch>.r` (a redelivered batch's result is dropped as a duplicate).
 */
import type { JsMsg } from "@hsmfleet/bus";
import { openHsmBackend } from "@hsmfleet/fs";
import { JobKind, autoImportSubjects, encodeAutoImportResult } from "@hsmfleet/protocol";
import type { AutoImportBatch, JobStatus } from "@hsmfleet/protocol";
import { AUTOIMPORT_BATCH_RULES } from "../item-checks.js";
import { ImportTargets } from "../import/import-targets.js";
import { TargetHsm } from "../import/target-hsm.js";
import { runJobPullers } from "../runtime/job-pullers.js";
import type { KindContext, WorkerJobKind } from "../runtime/job-kind.js";
import { BlobChangeApplier } from "./apply-blob-change.js";
import { applyAutoImportBatch } from "./autoimport-apply.js";
import { autoImportDownload } from "./autoimport-download.js";
import { AutoImportLedger } from "./autoimport-ledger.js";

/** Per job (one run of a service: its item key), what its batches are applied with. */
class AutoImportJobs {
  readonly #ctx: KindContext;
  readonly #targets: ImportTargets;
  readonly #ledgers = new Map<string, Promise<AutoImportLedger>>();

  constructor(ctx: KindContext) {
    this.#ctx = ctx;
    this.#targets = new ImportTargets(ctx.options.lfsPath);
  }

  ledger(jobId: string): Promise<AutoImportLedger> {
    let l = this.#ledgers.get(jobId);
    if (!l) {
      l = AutoImportLedger.open(this.#ctx.options.nc, jobId);
      l.catch(() => this.#ledgers.delete(jobId));
      this.#ledgers.set(jobId, l);
    }
    return l;
  }

  async applier(job: JobStatus, batch: AutoImportBatch, signal: AbortSignal) {
    const [target, container] = await Promise.all([
      this.#targets.for(job),
      this.#ctx.container(job),
    ]);
    const backend = job.spec.backend;
    const hsm =
      backend === "posix"
        ? undefined
        : openHsmBackend({
            backend: backend === "lustre" ? "lustre" : "hsm-emulation",
            xattr: job.spec.hsmXattr || "trusted.hsm",
            lfsPath: this.#ctx.options.lfsPath,
          });
    const states = hsm && new TargetHsm(target.root, hsm, job.spec.import.archiveId);
    return new BlobChangeApplier(target, container, {
      enableDeletions: batch.enableDeletions,
      hasHsm: states !== undefined,
      hsmState: (rel, st) => (states ? states.state(rel, st) : Promise.resolve(undefined)),
      ...(job.spec.import.mode === "full"
        ? {
            download: autoImportDownload({
              target,
              container,
              budget: this.#ctx.budget,
              concurrency: this.#ctx.options.blockConcurrency,
              signal,
              onBytes: (n) => (this.#ctx.stats.bytesMoved += n),
            }),
          }
        : {}),
    });
  }
}

const applyBatch = async (
  ctx: KindContext,
  jobs: AutoImportJobs,
  msg: JsMsg,
  batch: AutoImportBatch,
  job: JobStatus,
  signal: AbortSignal,
): Promise<void> => {
  const applier = await jobs.applier(job, batch, signal);
  const ledger = await jobs.ledger(batch.jobId);
  const done = await applyAutoImportBatch(
    batch,
    job.spec.container,
    applier,
    ledger,
    ctx.options.fileConcurrency,
    signal,
  );
  for (const e of done.errors)
    ctx.options.logger?.warn(
      { jobId: batch.jobId, path: e.path.toString("utf8"), operation: e.operation },
      `autoimport: ${e.message}`,
    );
  await ctx.js.publish(
    autoImportSubjects.result(batch.jobId),
    encodeAutoImportResult({
      jobId: batch.jobId,
      batchId: batch.batchId,
      workerId: ctx.options.workerId,
      counters: done.counters,
      outcomes: done.outcomes,
      failures: done.failures,
    }),
    { msgID: `${batch.batchId}.r` },
  );
  msg.ack();
};

const handleBatch = async (
  ctx: KindContext,
  jobs: AutoImportJobs,
  maxDeliver: number,
  msg: JsMsg,
): Promise<void> => {
  // A restarted service's new item key is admitted by admit-item.ts (a refused seal reads the
  // job record again).
  const batch = await ctx.admit(msg, AUTOIMPORT_BATCH_RULES);
  if (batch === undefined) return;
  return ctx.runItem(
    msg,
    maxDeliver,
    batch.jobId,
    { itemId: batch.batchId, kind: "transfer", path: Buffer.from(batch.changes[0]?.blob ?? "") },
    (job, scope) => applyBatch(ctx, jobs, msg, batch, job, scope.signal),
  );
};

/** Autoimport: batches of blob changes from a running `hsmfleet autoimport` service. */
export const autoImportKind: WorkerJobKind = {
  kind: JobKind.AutoImport,
  start: (ctx) => ({
    run: () => {
      const jobs = new AutoImportJobs(ctx);
      return runJobPullers(ctx, ctx.logging("transfer", ctx.transferLimits), {
        kind: JobKind.AutoImport,
        name: "autoimport",
        consumer: autoImportSubjects.consumer,
        handle: (msg) => handleBatch(ctx, jobs, ctx.transferLimits.maxDeliver, msg),
      });
    },
  }),
};
