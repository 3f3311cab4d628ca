/**
 * The items this worker runs, per job, and what each has done so far: sent to the job's
 * coordinator as JobProgress (core NATS, every `intervalMs`), so progress moves with the bytes
 * instead of with whole batches; and a job's cancel, which stops its items here so they report
 * what they finished (see Worker: a cancelled item publishes a result with those counters).
 */
import { sealHeaders } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { JobKind, emptyInFlightCounters, encodeJobProgress, subjects } from "@hsmfleet/protocol";
import type {
  ExportCounters,
  ImportCounters,
  InFlightCounters,
  JobProgress,
  RestoreCounters,
} from "@hsmfleet/protocol";

/** The reason an item's signal is aborted with when its job is cancelled. */
export class JobCancelledError extends Error {
  readonly jobId: string;
  constructor(jobId: string) {
    super(`job ${jobId} was cancelled`);
    this.name = "JobCancelledError";
    this.jobId = jobId;
  }
}

/** Counters an item's handler keeps; the handler passes its own (live) objects once. */
export interface ItemCounters {
  export?: ExportCounters | undefined;
  import?: ImportCounters | undefined;
  restore?: RestoreCounters | undefined;
}

/** One item in flight on this worker. */
export interface LiveItem {
  readonly jobId: string;
  readonly itemId: string;
  readonly attempt: number;
  /** The job's kind: says which counter the in-flight bytes belong to. */
  readonly kind: JobKind;
  /** The handler's counters (files and entries finished, bytes of finished files). */
  counters: ItemCounters;
  /** Payload bytes moved so far, including files not finished yet. */
  bytes: number;
  /** Aborted (with JobCancelledError) when the item's job is cancelled. */
  readonly signal: AbortSignal;
}

interface JobEntry {
  items: Set<LiveItem>;
  cancel: AbortController;
  /** The job's item key: progress is sealed with it (the coordinator ignores unsealed figures). */
  key: Uint8Array;
}

export class ItemProgressTracker {
  readonly #nc: NatsConnection;
  readonly #workerId: string;
  readonly #jobs = new Map<string, JobEntry>();
  /** Jobs cancelled (the newest kept): an item of one that starts later is stopped at once. */
  readonly #cancelled = new Set<string>();
  readonly #timer: NodeJS.Timeout;

  constructor(nc: NatsConnection, workerId: string, intervalMs: number) {
    this.#nc = nc;
    this.#workerId = workerId;
    this.#timer = setInterval(() => {
      for (const jobId of this.#jobs.keys()) this.send(jobId);
    }, intervalMs);
    this.#timer.unref();
  }

  start(jobId: string, itemId: string, attempt: number, kind: JobKind, key: Uint8Array): LiveItem {
    let job = this.#jobs.get(jobId);
    if (!job) {
      job = { items: new Set(), cancel: new AbortController(), key };
      if (this.#cancelled.has(jobId)) job.cancel.abort(new JobCancelledError(jobId));
      this.#jobs.set(jobId, job);
    }
    const item: LiveItem = {
      jobId,
      itemId,
      attempt,
      kind,
      counters: {},
      bytes: 0,
      signal: job.cancel.signal,
    };
    job.items.add(item);
    return item;
  }

  /** The item has reported (or was handed back): it is no longer shown as in flight. */
  end(item: LiveItem): void {
    const job = this.#jobs.get(item.jobId);
    if (!job) return;
    job.items.delete(item);
    if (job.items.size === 0) this.#jobs.delete(item.jobId);
  }

  /** Whether this worker runs items of the job now. */
  has(jobId: string): boolean {
    return this.#jobs.has(jobId);
  }

  /** Reports the job's items as they are now, then stops them (their signals abort). */
  cancel(jobId: string): void {
    this.#cancelled.add(jobId);
    if (this.#cancelled.size > 1000) {
      const oldest = this.#cancelled.values().next().value;
      if (oldest !== undefined) this.#cancelled.delete(oldest);
    }
    const job = this.#jobs.get(jobId);
    if (!job) return;
    this.send(jobId);
    job.cancel.abort(new JobCancelledError(jobId));
  }

  snapshot(jobId: string): JobProgress {
    const job = this.#jobs.get(jobId);
    return {
      jobId,
      workerId: this.#workerId,
      items: [...(job?.items ?? [])].map((i) => ({
        itemId: i.itemId,
        attempt: i.attempt,
        done: inFlightOf(i),
      })),
    };
  }

  send(jobId: string): void {
    const job = this.#jobs.get(jobId);
    if (this.#nc.isClosed() || !job) return;
    const subject = subjects.progress(jobId);
    const data = encodeJobProgress(this.snapshot(jobId));
    this.#nc.publish(subject, data, { headers: sealHeaders(job.key, subject, data) });
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** What one item has done, with its bytes in flight counted where its job kind counts bytes. */
export const inFlightOf = (i: LiveItem): InFlightCounters => {
  const done = emptyInFlightCounters();
  done.items = 1;
  if (i.counters.export) Object.assign(done.export, i.counters.export);
  if (i.counters.import) Object.assign(done.import, i.counters.import);
  if (i.counters.restore) Object.assign(done.restore, i.counters.restore);
  if (i.kind === JobKind.Export)
    done.export.bytesExported = Math.max(done.export.bytesExported, i.bytes);
  else if (i.kind === JobKind.Import)
    done.import.bytesDownloaded = Math.max(done.import.bytesDownloaded, i.bytes);
  else if (i.kind === JobKind.Restore)
    done.restore.bytesRestored = Math.max(done.restore.bytesRestored, i.bytes);
  return done;
};
