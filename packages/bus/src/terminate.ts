import type { JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";

/** The first nats-server release that records a reason given with +TERM (2.10.0). */
const TERM_REASON_SINCE = [2, 10, 0] as const;

/** Whether the server this connection talks to keeps a +TERM reason (nats-server ≥ 2.10). */
export const serverKeepsTermReason = (nc: NatsConnection): boolean => {
  const version = nc.info?.version ?? "";
  const parts = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!parts) return false;
  const [major, minor, patch] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const [a, b, c] = TERM_REASON_SINCE;
  return major !== a ? major > a : minor !== b ? minor > b : patch >= c;
};

/**
 * Ends a message for good: it is never redelivered (and leaves a work-queue stream). The reason
 * goes to the server where it keeps one (2.10+: in the MSG_TERMINATED advisory); nats-server 2.9
 * has no term reason, so there it is only logged by the caller.
 */
export const terminateMessage = (nc: NatsConnection, msg: JsMsg, reason: string): void => {
  if (serverKeepsTermReason(nc)) msg.term(reason.slice(0, 200));
  else msg.term();
};

/**
 * An error a handler throws for a message that must not be tried again (undecodable, forged,
 * unsafe): runWorkConsumer terminates it instead of handing it back.
 */
export interface TerminalMessageError extends Error {
  readonly terminal: true;
}

export const isTerminalMessageError = (err: unknown): err is TerminalMessageError =>
  err instanceof Error && (err as { terminal?: unknown }).terminal === true;
