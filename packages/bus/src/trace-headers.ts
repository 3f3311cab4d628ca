import { headers } from "@nats-io/transport-node";
import type { MsgHdrs } from "@nats-io/transport-node";
import { injectTraceContext, tracingEnabled } from "@hsmfleet/telemetry";

/**
 * NATS headers carrying the W3C trace context (traceparent/tracestate) bound to `key` (the work
 * item or job being handled), for a publish; undefined when tracing is off, so untraced publishes
 * carry no headers at all.
 */
export const traceHeaders = (key: object | undefined): MsgHdrs | undefined => {
  if (!tracingEnabled() || !key) return undefined;
  const h = headers();
  injectTraceContext((k, value) => h.set(k, value), key);
  return h;
};

/** Reads a header of a received message (for extractTraceContext / startWorkItem). */
export const headerReader =
  (msg: { headers?: MsgHdrs | undefined }) =>
  (key: string): string | undefined =>
    msg.headers?.get(key) || undefined;
