import { hasValidSeal, sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, JetStreamManager, NatsConnection } from "@hsmfleet/bus";
import {
  WORK_STREAM,
  decodeSyncResult,
  emptySyncCounters,
  encodeSyncBatch,
  syncSubjects,
} from "@hsmfleet/protocol";
import type { SyncCounters, SyncFailure, SyncOp, SyncResult } from "@hsmfleet/protocol";
import type { Logger } from "@hsmfleet/telemetry";

export interface PhaseOutcome {
  counters: SyncCounters;
  requeue: Buffer[];
  failures: SyncFailure[];
}

export const PHASE_DISPATCH_DEFAULTS = {
  /**
   * How often the items still waiting for a result are looked up in the work stream (30 s, the
   * consumers' ack wait). One that left the stream with no result — a worker terminated it as
   * refused or undecodable, or the stream lost it — is published again then, not after the item
   * timeout.
   */
  lostCheckMs: 30_000,
  /**
   * A result is published before its item is acknowledged, so it arrives at the latest this long
   * after the item leaves the stream (2 s); only then is an item without one lost.
   */
  resultGraceMs: 2_000,
} as const;

export interface PhaseDispatchOptions {
  lostCheckMs?: number | undefined;
  resultGraceMs?: number | undefined;
}

/** A phase is cut into at least this many work items when it has enough operations… */
const SPREAD_ITEMS = 16;
/** …of at least this many operations each. */
const MIN_OPS_PER_ITEM = 8;

/**
 * Operations per work item for a phase of `n`: at most `opsPerItem`, but small enough that the
 * phase makes SPREAD_ITEMS items when it can, so that every worker (and each of its concurrent
 * items) gets a share of a small phase instead of one item holding it all.
 */
export const itemSize = (n: number, opsPerItem: number): number =>
  Math.max(1, Math.min(opsPerItem, Math.max(MIN_OPS_PER_ITEM, Math.ceil(n / SPREAD_ITEMS))));

/**
 * Publishes the operations of one phase as sealed work items (`itemSize` each) on the
 * service's subject and waits for every item's result. Results are untrusted input: only a result
 * with the job's seal, for an item of this phase, counts, and each once. An item with no result
 * after `itemTimeoutMs` (its worker and every redelivery lost) is published again under a new id;
 * so is one found gone from the work stream with no result (`lostCheckMs`), much sooner.
 */
export class PhaseDispatcher {
  readonly #js: JetStreamClient;
  readonly #jobId: string;
  readonly #key: Uint8Array;
  readonly #logger: Logger | undefined;
  readonly #waiting = new Map<string, (r: SyncResult | undefined) => void>();
  readonly #sub: ReturnType<NatsConnection["subscribe"]>;
  /** Items waiting for a result: their stream sequence, once published. */
  readonly #published = new Map<string, number>();
  readonly #lostTimer: NodeJS.Timeout;
  readonly #resultGraceMs: number;
  #jsm: JetStreamManager | undefined;
  #checking = false;
  #phase = 0;

  constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jobId: string,
    key: Uint8Array,
    logger?: Logger,
    options: PhaseDispatchOptions = {},
  ) {
    this.#resultGraceMs = options.resultGraceMs ?? PHASE_DISPATCH_DEFAULTS.resultGraceMs;
    this.#lostTimer = setInterval(
      () => void this.#checkLost(),
      options.lostCheckMs ?? PHASE_DISPATCH_DEFAULTS.lostCheckMs,
    );
    this.#lostTimer.unref();
    this.#js = js;
    this.#jobId = jobId;
    this.#key = key;
    this.#logger = logger;
    // Workers publish results into the RESULTS stream; a plain subscription sees them as they land.
    // A result missed while this service was down needs no replay: the phase is applied again.
    this.#sub = nc.subscribe(syncSubjects.result(jobId), {
      callback: (err, msg) => {
        if (err) return;
        if (!hasValidSeal(key, msg)) {
          this.#logger?.warn({ subject: msg.subject }, "sync: unsealed result refused");
          return;
        }
        let result: SyncResult;
        try {
          result = decodeSyncResult(msg.data);
        } catch (e) {
          this.#logger?.warn({ err: e }, "sync: undecodable result refused");
          return;
        }
        const done = this.#waiting.get(result.batchId);
        if (done === undefined || result.jobId !== this.#jobId) return;
        this.#waiting.delete(result.batchId);
        done(result);
      },
    });
  }

  async run(
    ops: SyncOp[],
    opsPerItem: number,
    itemTimeoutMs: number,
    signal: AbortSignal,
  ): Promise<PhaseOutcome> {
    const phase = ++this.#phase;
    const out: PhaseOutcome = { counters: emptySyncCounters(), requeue: [], failures: [] };
    const items: SyncOp[][] = [];
    const size = itemSize(ops.length, opsPerItem);
    for (let i = 0; i < ops.length; i += size) items.push(ops.slice(i, i + size));
    const stamp = `${Date.now().toString(36)}-${phase}`;
    // One abort listener per phase (not per item: a phase may have many): it ends every wait.
    const mine = new Set<string>();
    const onAbort = () => {
      for (const id of [...mine]) this.#waiting.get(id)?.(undefined);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      await Promise.all(
        items.map((itemOps, n) => this.#item(itemOps, n, stamp, mine, out, itemTimeoutMs, signal)),
      );
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
    return out;
  }

  /** One work item until it has a result (published again under a new id after a timeout). */
  async #item(
    itemOps: SyncOp[],
    n: number,
    stamp: string,
    mine: Set<string>,
    out: PhaseOutcome,
    itemTimeoutMs: number,
    signal: AbortSignal,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw signal.reason;
      const batchId = `${this.#jobId}.${stamp}.${n}.${attempt}`;
      mine.add(batchId);
      const result = await this.#one(batchId, itemOps, itemTimeoutMs).finally(() =>
        mine.delete(batchId),
      );
      if (result === undefined) {
        this.#logger?.warn({ batchId }, "sync: no result for a work item in time; published again");
        continue;
      }
      for (const k of Object.keys(out.counters) as (keyof SyncCounters)[])
        out.counters[k] += result.counters[k];
      out.requeue.push(...result.requeue);
      out.failures.push(...result.failures);
      return;
    }
  }

  /** Publishes one item and waits for its result; undefined after `timeoutMs` or an abort. */
  async #one(batchId: string, ops: SyncOp[], timeoutMs: number): Promise<SyncResult | undefined> {
    const result = new Promise<SyncResult | undefined>((resolve) => {
      const finish = (r: SyncResult | undefined) => {
        clearTimeout(timer);
        this.#waiting.delete(batchId);
        resolve(r);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      this.#waiting.set(batchId, finish);
    });
    const subject = syncSubjects.batch(this.#jobId);
    const data = encodeSyncBatch({ jobId: this.#jobId, batchId, ops });
    const ack = await this.#js.publish(subject, data, {
      msgID: batchId,
      headers: sealHeaders(this.#key, subject, data),
    });
    if (this.#waiting.has(batchId)) this.#published.set(batchId, ack.seq);
    return result.finally(() => this.#published.delete(batchId));
  }

  /**
   * Looks up every item still waiting in the work stream (a work-queue stream: an item leaves it
   * when a worker acknowledges or terminates it). One that is gone and still has no result after
   * `resultGraceMs` is lost: its wait ends, and `#item` publishes it again.
   */
  async #checkLost(): Promise<void> {
    if (this.#checking || this.#published.size === 0) return;
    this.#checking = true;
    try {
      this.#jsm ??= await this.#js.jetstreamManager();
      const gone: string[] = [];
      for (const [batchId, seq] of [...this.#published]) {
        try {
          if ((await this.#jsm.streams.getMessage(WORK_STREAM, { seq })) === null)
            gone.push(batchId);
        } catch {
          // The server did not answer: look again at the next check.
        }
      }
      if (gone.length === 0) return;
      await new Promise((r) => setTimeout(r, this.#resultGraceMs).unref());
      for (const batchId of gone) {
        const finish = this.#waiting.get(batchId);
        if (finish === undefined) continue; // its result came
        this.#logger?.warn(
          { batchId },
          "sync: a work item left the work stream with no result (a worker terminated it, or the stream lost it); published again",
        );
        finish(undefined);
      }
    } catch (e) {
      this.#logger?.warn({ err: e }, "sync: could not look up the work items in flight");
    } finally {
      this.#checking = false;
    }
  }

  close(): void {
    clearInterval(this.#lostTimer);
    this.#sub.unsubscribe();
  }
}
