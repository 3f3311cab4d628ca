/**
 * The service side of autoimport work items: publishes the items of a round (sealed with the run's
 * item key, one subject per shard) and waits for each item's result. Results are untrusted input:
 * only a result with the job's seal, for an item in flight, counts, and each once. Every
 * `itemTimeoutMs` without a result the item is looked up in the WORK stream (work-queue retention:
 * it is there until a worker acknowledges or terminates it): while it is there it is queued or in a
 * worker's hands (JetStream redelivers it if that worker dies), so the wait goes on, however long
 * the backlog; once it is gone with no result (its result lost, or its last attempt failed) it is
 * published again under a new id; after `maxItemAttempts` its changes count as failed (their
 * messages are abandoned and come again from Service Bus).
 */
import { JetStreamApiError, hasValidSeal, sealHeaders } from "@hsmfleet/bus";
import type { JetStreamClient, JetStreamManager, NatsConnection } from "@hsmfleet/bus";
import {
  WORK_STREAM,
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
  readonly #jsm: JetStreamManager;
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
    jsm: JetStreamManager,
    jobId: string,
    key: Uint8Array,
    log: (message: string) => void,
  ) {
    this.#js = js;
    this.#jsm = jsm;
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

  /**
   * Runs the items of one round; one result per item, in the items' order. An item whose result had
   * not come when `signal` aborted (the service stopping) has `undefined`: its changes are neither
   * applied nor failed as far as this run knows.
   */
  async run(items: DispatchItem[], o: DispatchOptions): Promise<(AutoImportResult | undefined)[]> {
    const round = ++this.#round;
    return Promise.all(
      items.map(async (item, n) => {
        for (let attempt = 1; attempt <= o.maxItemAttempts; attempt++) {
          if (o.signal.aborted) return undefined;
          const batchId = `${this.#jobId}.${this.#stamp}.${round}.${n}.${attempt}`;
          const result = await this.#one(batchId, item, o);
          if (result === undefined) {
            if (o.signal.aborted) return undefined;
            this.#log(`work item ${batchId} left the queue with no result: published again`);
            continue;
          }
          if (result.outcomes.length === item.changes.length) return result;
          this.#log(`result of ${batchId} has ${result.outcomes.length} outcomes: ignored`);
        }
        const why = `no result from the fleet after ${o.maxItemAttempts} attempts`;
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
    let finish: (r: AutoImportResult | undefined) => void = () => undefined;
    const result = new Promise<AutoImportResult | undefined>((resolve) => {
      finish = resolve;
    });
    this.#waiting.set(batchId, (r) => finish(r));
    const onAbort = () => finish(undefined);
    o.signal.addEventListener("abort", onAbort, { once: true });
    const subject = autoImportSubjects.batch(this.#jobId, item.shard);
    const data = encodeAutoImportBatch({
      jobId: this.#jobId,
      batchId,
      enableDeletions: o.enableDeletions,
      changes: item.changes,
    });
    try {
      const ack = await this.#js.publish(subject, data, {
        msgID: batchId,
        headers: sealHeaders(this.#key, subject, data),
      });
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const tick = new Promise<"tick">((resolve) => {
          timer = setTimeout(() => resolve("tick"), o.itemTimeoutMs);
        });
        const r = await Promise.race([result, tick]);
        clearTimeout(timer);
        if (r !== "tick") return r;
        if (!(await this.#queued(ack.seq))) return undefined;
      }
    } finally {
      o.signal.removeEventListener("abort", onAbort);
      this.#waiting.delete(batchId);
    }
  }

  /** Whether the item is still in the WORK stream (queued, or held by a worker). */
  async #queued(seq: number): Promise<boolean> {
    try {
      return (await this.#jsm.streams.getMessage(WORK_STREAM, { seq })) !== null;
    } catch (err) {
      // Gone (acknowledged or terminated): 404. Any other failure (a slow server): keep waiting.
      return !(err instanceof JetStreamApiError && err.status === 404);
    }
  }

  /** Work items published and waiting for their result. */
  get itemsInFlight(): number {
    return this.#waiting.size;
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}
