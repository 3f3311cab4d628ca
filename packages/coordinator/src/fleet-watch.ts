import type { NatsConnection } from "@hsmfleet/bus";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { WorkerHeartbeat } from "@hsmfleet/protocol";

/** Workers seen on the heartbeat subject; one silent for `staleAfterMs` counts as gone. */
export class FleetWatch {
  readonly #workers = new Map<string, WorkerHeartbeat>();
  readonly #staleAfterMs: number;
  readonly #sub;

  constructor(nc: NatsConnection, staleAfterMs = 15_000) {
    this.#staleAfterMs = staleAfterMs;
    this.#sub = nc.subscribe(subjects.heartbeatAll, {
      callback: (err, msg) => {
        if (err) return;
        try {
          const hb = decodeWorkerHeartbeat(msg.data);
          this.#workers.set(hb.workerId, { ...hb, sentAtMs: Date.now() });
        } catch {
          // Not ours or corrupt: ignore.
        }
      },
    });
    nc.publish(subjects.heartbeatPing);
  }

  /** Heartbeats of workers alive now, by worker id. */
  live(): WorkerHeartbeat[] {
    const now = Date.now();
    const out: WorkerHeartbeat[] = [];
    for (const [id, hb] of this.#workers) {
      if (now - hb.sentAtMs > this.#staleAfterMs) this.#workers.delete(id);
      else out.push(hb);
    }
    return out;
  }

  liveWorkers(): number {
    return this.live().length;
  }

  stop(): void {
    this.#sub.unsubscribe();
  }
}
