import type { NatsConnection } from "@hsmfleet/bus";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";

/**
 * How many workers are alive, as this worker sees the heartbeat subject: every worker that sent a
 * heartbeat within `staleAfterMs`, this one included. Job-wide limits are split by this count.
 */
export class LiveWorkers {
  readonly #self: string;
  readonly #staleAfterMs: number;
  readonly #lastSeen = new Map<string, number>();
  readonly #sub: { unsubscribe(): void };
  readonly #onChange: (count: number) => void;
  #count = 1;

  constructor(
    nc: NatsConnection,
    self: string,
    staleAfterMs: number,
    onChange: (count: number) => void,
  ) {
    this.#self = self;
    this.#staleAfterMs = staleAfterMs;
    this.#onChange = onChange;
    this.#sub = nc.subscribe(subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          this.#lastSeen.set(decodeWorkerHeartbeat(msg.data).workerId, Date.now());
        } catch {
          return; // not a heartbeat of ours
        }
        this.#update();
      },
    });
    // Everyone answers a ping with a heartbeat: the count is right within a round trip.
    nc.publish(subjects.heartbeatPing);
  }

  /** Live workers now (at least 1: this one). */
  get count(): number {
    this.#update();
    return this.#count;
  }

  #update(): void {
    const now = Date.now();
    let n = 0;
    for (const [id, at] of this.#lastSeen) {
      if (now - at > this.#staleAfterMs) this.#lastSeen.delete(id);
      else if (id !== this.#self) n++;
    }
    const count = n + 1;
    if (count !== this.#count) {
      this.#count = count;
      this.#onChange(count);
    }
  }

  stop(): void {
    this.#sub.unsubscribe();
  }
}
