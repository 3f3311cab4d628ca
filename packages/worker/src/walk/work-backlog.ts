import { jetstreamManager } from "@hsmfleet/bus";
import type { JetStreamManager, NatsConnection } from "@hsmfleet/bus";
import { WORK_STREAM, subjects } from "@hsmfleet/protocol";

export interface WorkBacklogOptions {
  nc: NatsConnection;
  /** Transfer batches of one job the WORK stream may hold before a walk waits; 0: no bound. */
  maxQueuedBatches: number;
  /** Ends every wait at once (worker shutdown): the walk then publishes what it holds. */
  signal: AbortSignal;
  /** Pause between two looks at the stream while waiting. Default 250 ms. */
  pollMs?: number | undefined;
  /** Told when a read fails (the walk then publishes unchecked for 10 s): logged by the worker. */
  onReadFailed?: ((err: unknown) => void) | undefined;
}

/** What the backlog made walks do (tests, benchmarks, heartbeat stats). */
export interface WorkBacklogStats {
  /** Publishes that had to wait for the job's backlog to drop below the bound. */
  waits: number;
  /** Milliseconds spent waiting, all walks together. */
  waitedMs: number;
  /** Reads of the stream that failed (each lets walks publish unchecked for 10 s). */
  failedReads: number;
}

const SKIP_AFTER_FAILURE_MS = 10_000;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });

/**
 * The walk's backpressure (issue 22): before a walk shard publishes a transfer batch, it asks how
 * many of the job's transfer batches the WORK stream holds (queued or in flight: work-queue
 * retention drops a batch when it is acked) and waits while that is `maxQueuedBatches` or more.
 * A walk is far faster than the transfers of real files; without a bound it publishes the whole
 * tree into the WORK stream (~110 B a file on each R3 node's disk) and the coordinator's frontier
 * (docs/scale.md). The walk's item is kept alive while it waits (ShardRun's keep-alive timer).
 *
 * The count is the stream's own (stream info filtered on the job's work subjects), read before
 * each transfer batch is published: one small JetStream API request per batch (~1,000 files),
 * ~200 a second at 200,000 files/s. Walks that read at the same moment may each pass one batch
 * over, so the WORK stream holds at most `maxQueuedBatches` + the fleet's walk slots of the job's
 * batches (a walk slot's earlier publishes are awaited before it reads: Publisher flush). A
 * failed read does not block the walk: it publishes, and reads again 10 s later.
 */
export class WorkBacklog {
  readonly stats: WorkBacklogStats = { waits: 0, waitedMs: 0, failedReads: 0 };
  readonly #o: WorkBacklogOptions;
  readonly #pollMs: number;
  #jsm: Promise<JetStreamManager> | undefined;
  /** After a failed read, no read (and no wait) until then: a lost stream leader must not make
   * every publish wait for a request timeout. */
  #skipUntil = 0;

  constructor(options: WorkBacklogOptions) {
    this.#o = options;
    this.#pollMs = options.pollMs ?? 250;
  }

  get limit(): number {
    return this.#o.maxQueuedBatches;
  }

  async #read(jobId: string): Promise<number | undefined> {
    const subject = subjects.transfer(jobId);
    if (Date.now() < this.#skipUntil) return undefined;
    try {
      this.#jsm ??= jetstreamManager(this.#o.nc);
      // Filtered on the job's work subjects with a wildcard, not on the transfer subject itself:
      // nats-server answered an exact-subject filter with no subject counts at all once batches
      // had been acked out of order and more published (seen in bench:control-plane at 5M–30M
      // files and reproduced by test/work-backlog.test.ts), which read as 0 queued — the walk
      // never waited and the WORK stream grew to 8,979 batches with a bound of 4,096.
      const info = await (
        await this.#jsm
      ).streams.info(WORK_STREAM, {
        subjects_filter: subjects.workForJob(jobId),
      });
      return info.state.subjects?.[subject] ?? 0;
    } catch (err) {
      this.#jsm = undefined;
      this.#skipUntil = Date.now() + SKIP_AFTER_FAILURE_MS;
      this.stats.failedReads++;
      this.#o.onReadFailed?.(err);
      return undefined;
    }
  }

  /** Resolves when one more transfer batch of `jobId` may be published. */
  async admit(jobId: string): Promise<void> {
    const limit = this.#o.maxQueuedBatches;
    if (limit <= 0) return;
    let count = await this.#read(jobId);
    if (count === undefined || count < limit) return;
    const started = Date.now();
    this.stats.waits++;
    while (count !== undefined && count >= limit && !this.#o.signal.aborted) {
      await sleep(this.#pollMs, this.#o.signal);
      count = await this.#read(jobId);
    }
    this.stats.waitedMs += Date.now() - started;
  }
}
