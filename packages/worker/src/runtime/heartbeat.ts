import type { NatsConnection } from "@hsmfleet/bus";
import { encodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { WorkerHeartbeat } from "@hsmfleet/protocol";

/** Each period is the interval ± this share, drawn anew: workers started together drift apart. */
export const HEARTBEAT_JITTER = 0.2;
/** Answers to a ping are spread over up to this long (and a quarter of the interval at most). */
export const PING_SPREAD_MS = 200;

/**
 * Publishes a WorkerHeartbeat on core NATS about every `intervalMs` (± HEARTBEAT_JITTER, so a
 * fleet started at once by a scale set does not beat in step) until stopped. A ping is answered
 * after a random delay within PING_SPREAD_MS, and pings arriving meanwhile share that one answer:
 * 64 workers joining at once, each pinging, cost 64 answers each spread over 200 ms, not 64².
 */
export const startHeartbeat = (
  nc: NatsConnection,
  workerId: string,
  intervalMs: number,
  snapshot: () => WorkerHeartbeat,
  random: () => number = Math.random,
): { stop(): void } => {
  let timer: NodeJS.Timeout | undefined;
  let answer: NodeJS.Timeout | undefined;
  let stopped = false;
  const send = () => {
    if (!stopped && !nc.isClosed())
      nc.publish(subjects.heartbeat(workerId), encodeWorkerHeartbeat(snapshot()));
  };
  const schedule = () => {
    const period = intervalMs * (1 - HEARTBEAT_JITTER + 2 * HEARTBEAT_JITTER * random());
    timer = setTimeout(() => {
      send();
      schedule();
    }, period);
    timer.unref();
  };
  send();
  schedule();
  const ping = nc.subscribe(subjects.heartbeatPing, {
    callback: () => {
      if (answer !== undefined || stopped) return;
      answer = setTimeout(
        () => {
          answer = undefined;
          send();
        },
        random() * Math.min(PING_SPREAD_MS, intervalMs / 4),
      );
      answer.unref();
    },
  });
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(answer);
      ping.unsubscribe();
    },
  };
};
