import type { NatsConnection } from "@hsmfleet/bus";
import { encodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import type { WorkerHeartbeat } from "@hsmfleet/protocol";

/** Each period is the interval ± this share, drawn anew: workers started together drift apart. */
export const HEARTBEAT_JITTER = 0.2;
/** Answers to a ping are spread over up to this long (and a quarter of the interval at most). */
export const PING_SPREAD_MS = 200;
/**
 * Ping answers a worker gives at once, and then one per PING_REFILL_MS (a token bucket). Anyone
 * who can publish on NATS can ping (a ping carries nothing to seal: dashboards, coordinators and
 * workers all send them), so a flood of pings must not become a flood of heartbeats: it costs a
 * worker at most this many answers, then four a second (docs/security.md) — a quarter of a second
 * is as stale as a watching dashboard or coordinator sees a worker's counters while pings flood.
 */
export const PING_BURST = 3;
export const PING_REFILL_MS = 250;

/**
 * Publishes a WorkerHeartbeat on core NATS about every `intervalMs` (± HEARTBEAT_JITTER, so a
 * fleet started at once by a scale set does not beat in step) until stopped. A ping is answered
 * after a random delay within PING_SPREAD_MS, and pings arriving meanwhile share that one answer:
 * 64 workers joining at once, each pinging, cost 64 answers each spread over 200 ms, not 64².
 * Answers beyond PING_BURST at once, then one per PING_REFILL_MS, are dropped.
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
  let tokens = PING_BURST;
  let refilledAt = Date.now();
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
      const now = Date.now();
      tokens = Math.min(PING_BURST, tokens + (now - refilledAt) / PING_REFILL_MS);
      refilledAt = now;
      if (tokens < 1) return;
      tokens -= 1;
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
