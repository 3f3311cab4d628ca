import type { NatsConnection } from "@hsmfleet/bus";
import { encodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { WorkerHeartbeat } from "@hsmfleet/protocol";

/** Publishes a WorkerHeartbeat on core NATS every `intervalMs` until stopped. */
export const startHeartbeat = (
  nc: NatsConnection,
  workerId: string,
  intervalMs: number,
  snapshot: () => WorkerHeartbeat,
): { stop(): void } => {
  const send = () => {
    if (!nc.isClosed()) nc.publish(subjects.heartbeat(workerId), encodeWorkerHeartbeat(snapshot()));
  };
  send();
  const timer = setInterval(send, intervalMs);
  timer.unref();
  const ping = nc.subscribe(subjects.heartbeatPing, { callback: () => send() });
  return {
    stop: () => {
      clearInterval(timer);
      ping.unsubscribe();
    },
  };
};
