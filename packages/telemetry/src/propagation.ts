import { ROOT_CONTEXT, createContextKey, propagation, trace } from "@opentelemetry/api";
import type { Context, SpanContext } from "@opentelemetry/api";
import { tracingEnabled } from "./state.js";

/**
 * The span new work items are children of. Work items of a job are children of the job's phase
 * span, not of the item that published them (a deep tree would otherwise nest a trace thousands
 * of levels deep): a worker re-injects the context it received.
 */
const PARENT_OF_WORK = createContextKey("hsmfleet.parent-of-work");

/**
 * Trace contexts are passed explicitly, bound to the object that stands for a unit of work (the
 * received JsMsg on a worker, the job's options object on the coordinator), not through an
 * async-context manager: on Node 20 AsyncLocalStorage hooks every promise of the process and cost
 * ~30% CPU per small file in the export benchmark (docs/benchmarks.md).
 */
const bound = new WeakMap<object, Context>();

export const bindTraceContext = (key: object, ctx: Context): void => {
  bound.set(key, ctx);
};

/** The context bound to `key` (the root context when none). */
export const traceContextFor = (key: object | undefined): Context =>
  (key && bound.get(key)) || ROOT_CONTEXT;

/**
 * Calls `set` with the W3C trace context (traceparent, tracestate) for work published under
 * `key`; nothing when tracing is off or nothing is bound.
 */
export const injectTraceContext = (
  set: (key: string, value: string) => void,
  key?: object,
): void => {
  if (!tracingEnabled()) return;
  const ctx = traceContextFor(key);
  const parent = ctx.getValue(PARENT_OF_WORK) as SpanContext | undefined;
  propagation.inject(parent ? trace.setSpanContext(ctx, parent) : ctx, undefined, {
    set: (_carrier, k, value) => set(k, value),
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

/** trace_id/span_id of the span bound to `key`, for a log line ({} when none). */
export const traceLogFields = (key: object | undefined): Record<string, string> => {
  if (!tracingEnabled() || !key) return {};
  const span = trace.getSpanContext(traceContextFor(key));
  return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
};
