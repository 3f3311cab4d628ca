import { hasValidSeal, sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import {
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
 * after `itemTimeoutMs` (its worker and every redelivery lost) is published again under a new id.
 */
export class PhaseDispatcher {
  readonly #js: JetStreamClient;
  readonly #jobId: string;
  readonly #key: Uint8Array;
  readonly #logger: Logger | undefined;
  readonly #waiting = new Map<string, (r: SyncResult | undefined) => void>();
  readonly #sub: ReturnType<NatsConnection["subscribe"]>;
  #phase = 0;

  constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jobId: string,
    key: Uint8Array,
    logger?: Logger,
  ) {
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
    await this.#js.publish(subject, data, {
      msgID: batchId,
      headers: sealHeaders(this.#key, subject, data),
    });
    return result;
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}
