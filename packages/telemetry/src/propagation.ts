import { ROOT_CONTEXT, context, createContextKey, propagation, trace } from "@opentelemetry/api";
import type { Context, SpanContext } from "@opentelemetry/api";
import { tracingEnabled } from "./state.js";

/**
 * The span new work items are children of. Work items of a job are children of the job's phase
 * span, not of the item that published them (a deep tree would otherwise nest a trace thousands
 * of levels deep): a worker re-injects the context it received, and records the publishing item
 * as an attribute.
 */
const PARENT_OF_WORK = createContextKey("hsmfleet.parent-of-work");

/** Calls `set` with the W3C trace context (traceparent, tracestate) of the current phase; nothing when tracing is off. */
export const injectTraceContext = (set: (key: string, value: string) => void): void => {
  if (!tracingEnabled()) return;
  const active = context.active();
  const parent = active.getValue(PARENT_OF_WORK) as SpanContext | undefined;
  const ctx = parent ? trace.setSpanContext(active, parent) : active;
  propagation.inject(ctx, undefined, {
    set: (_carrier, key, value) => set(key, value),
  });
};

/** The context a received message carries (the root context when none or tracing is off). */
export const extractTraceContext = (get: (key: string) => string | undefined): Context => {
  if (!tracingEnabled()) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, undefined, {
    get: (_carrier, key) => get(key),
    keys: () => ["traceparent", "tracestate"],
  });
};

/** `ctx` marked so that work published under it is parented like the work that was received. */
export const withParentOfWork = (ctx: Context, parent: SpanContext | undefined): Context =>
  parent ? ctx.setValue(PARENT_OF_WORK, parent) : ctx;
