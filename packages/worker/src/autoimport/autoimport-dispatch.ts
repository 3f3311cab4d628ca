/**
 * The service side of autoimport work items: publishes the items of a round (sealed with the run's
 * item key, one subject per shard) and waits for each item's result. Results are untrusted input:
 * only a result with the job's seal, for an item in flight, counts, and each once. An item with no
 * result after `itemTimeoutMs` (its worker and every redelivery lost) is published again under a
 * new id; after `maxItemAttempts` its changes count as failed (their messages are abandoned and
 * come again from Service Bus).
 */
import { hasValidSeal, sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, NatsConnection } from "@hsmfleet/bus";
import {
  autoImportSubjects,
  decodeAutoImportResult,
  emptyAutoImportCounters,
  encodeAutoImportBatch,
} from "@hsmfleet/protocol";
import type { AutoImportChange, AutoImportResult } from "@hsmfleet/protocol";

export interface DispatchItem {
  shard: number;
  changes: AutoImportChange[];
}

export interface DispatchOptions {
  enableDeletions: boolean;
  itemTimeoutMs: number;
  maxItemAttempts: number;
  signal: AbortSignal;
}

export class AutoImportDispatcher {
  readonly #js: JetStreamClient;
  readonly #jobId: string;
  readonly #key: Uint8Array;
  readonly #stamp = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  readonly #waiting = new Map<string, (r: AutoImportResult | undefined) => void>();
  readonly #sub: ReturnType<NatsConnection["subscribe"]>;
  readonly #log: (message: string) => void;
  #round = 0;

  constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jobId: string,
    key: Uint8Array,
    log: (message: string) => void,
  ) {
    this.#js = js;
    this.#jobId = jobId;
    this.#key = key;
    this.#log = log;
    // Workers publish results into the RESULTS stream; a plain subscription sees them as they
    // land. A result missed while this service was down needs no replay: its Service Bus messages
    // were never completed and come again.
    this.#sub = nc.subscribe(autoImportSubjects.result(jobId), {
      callback: (err, msg) => {
        if (err) return;
        if (!hasValidSeal(key, msg)) {
          log(`unsealed result on ${msg.subject} refused`);
          return;
        }
        let result: AutoImportResult;
        try {
          result = decodeAutoImportResult(msg.data);
        } catch (e) {
          log(`undecodable result refused: ${(e as Error).message}`);
          return;
        }
        const done = this.#waiting.get(result.batchId);
        if (done === undefined || result.jobId !== this.#jobId) return;
        this.#waiting.delete(result.batchId);
        done(result);
      },
    });
  }

  /** Runs the items of one round; one result per item, in the items' order. */
  async run(items: DispatchItem[], o: DispatchOptions): Promise<AutoImportResult[]> {
    const round = ++this.#round;
    return Promise.all(
      items.map(async (item, n) => {
        for (let attempt = 1; attempt <= o.maxItemAttempts; attempt++) {
          if (o.signal.aborted) break;
          const batchId = `${this.#jobId}.${this.#stamp}.${round}.${n}.${attempt}`;
          const result = await this.#one(batchId, item, o);
          if (result === undefined) {
            if (!o.signal.aborted)
              this.#log(`no result for work item ${batchId} in ${o.itemTimeoutMs} ms`);
            continue;
          }
          if (result.outcomes.length === item.changes.length) return result;
          this.#log(`result of ${batchId} has ${result.outcomes.length} outcomes: ignored`);
        }
        const why = o.signal.aborted
          ? "stopped before the fleet's result came"
          : `no result from the fleet after ${o.maxItemAttempts} attempts`;
        return {
          jobId: this.#jobId,
          batchId: "",
          workerId: "",
          counters: emptyAutoImportCounters(),
          outcomes: item.changes.map(() => "failed" as const),
          failures: item.changes.map((_, index) => ({ index, message: why })),
        };
      }),
    );
  }

  async #one(
    batchId: string,
    item: DispatchItem,
    o: DispatchOptions,
  ): Promise<AutoImportResult | undefined> {
    const result = new Promise<AutoImportResult | undefined>((resolve) => {
      const finish = (r: AutoImportResult | undefined) => {
        clearTimeout(timer);
        o.signal.removeEventListener("abort", onAbort);
        this.#waiting.delete(batchId);
        resolve(r);
      };
      const onAbort = () => finish(undefined);
      const timer = setTimeout(onAbort, o.itemTimeoutMs);
      o.signal.addEventListener("abort", onAbort, { once: true });
      this.#waiting.set(batchId, finish);
    });
    const subject = autoImportSubjects.batch(this.#jobId, item.shard);
    const data = encodeAutoImportBatch({
      jobId: this.#jobId,
      batchId,
      enableDeletions: o.enableDeletions,
      changes: item.changes,
    });
    try {
      await this.#js.publish(subject, data, {
        msgID: batchId,
        headers: sealHeaders(this.#key, subject, data),
      });
    } catch (err) {
      this.#waiting.get(batchId)?.(undefined);
      throw err;
    }
    return result;
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}
