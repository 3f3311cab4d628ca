import { headers } from "@nats-io/transport-node";
import type { MsgHdrs } from "@nats-io/transport-node";
import { injectTraceContext, tracingEnabled } from "@hsmfleet/telemetry";

/**
 * NATS headers carrying the current W3C trace context (traceparent/tracestate), for a publish;
 * undefined when tracing is off, so untraced publishes carry no headers at all.
 */
export const traceHeaders = (): MsgHdrs | undefined => {
  if (!tracingEnabled()) return undefined;
  const h = headers();
  injectTraceContext((key, value) => h.set(key, value));
  return h;
};

/** Reads a header of a received message (for extractTraceContext / startWorkItem). */
export const headerReader =
  (msg: { headers?: MsgHdrs | undefined }) =>
  (key: string): string | undefined =>
    msg.headers?.get(key) || undefined;
