import { ROOT_CONTEXT, SpanKind, SpanStatusCode, context, trace } from "@opentelemetry/api";
import type { Attributes, Context, Span } from "@opentelemetry/api";
import { errorMessage } from "@hsmfleet/core";
import { instruments } from "./metrics.js";
import type { Direction } from "./metrics.js";
import { extractTraceContext, withParentOfWork } from "./propagation.js";
import { redactPath, scrubSecrets, tracePathModeFromEnv } from "./redaction.js";
import type { TracePathMode } from "./redaction.js";
import { tracingEnabled } from "./state.js";
import { SERVICE_VERSION } from "./version.js";

const tracer = () => trace.getTracer("hsmfleet", SERVICE_VERSION);

let pathMode: TracePathMode | undefined;
const paths = (): TracePathMode => (pathMode ??= tracePathModeFromEnv());

const pathAttribute = (path: Buffer): Attributes => {
  const shown = redactPath(path, paths());
  return shown === undefined ? {} : { "hsmfleet.path": shown };
};

const fail = (span: Span, err: unknown): void => {
  const message = scrubSecrets(errorMessage(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.addEvent("exception", {
    "exception.type": err instanceof Error ? err.name : "Error",
    "exception.message": message,
  });
};

export interface JobSpanInfo {
  kind: string;
  /** When known up front (else set from `describe`). */
  jobId?: string | undefined;
  /** Named the phase span: "walk" (scan), "transfer" (export: walk and uploads together). */
  phase: string;
  root?: Buffer | undefined;
  attributes?: Attributes | undefined;
}

/**
 * Runs a coordinator's job as one trace: a "<kind> job" root span and a "<kind> <phase>" child
 * under which every work item of the job (published from inside `fn`) hangs. `describe` turns the
 * outcome into span attributes (files, bytes, errors, state).
 */
export const withJobSpan = async <T>(
  info: JobSpanInfo,
  fn: () => Promise<T>,
  describe?: (result: T) => Attributes,
): Promise<T> => {
  if (!tracingEnabled()) return fn();
  const attributes: Attributes = {
    ...(info.jobId ? { "hsmfleet.job_id": info.jobId } : {}),
    "hsmfleet.job.kind": info.kind,
    ...(info.root ? pathAttribute(info.root) : {}),
    ...info.attributes,
  };
  const job = tracer().startSpan(`${info.kind} job`, { attributes, root: true }, ROOT_CONTEXT);
  const jobCtx = trace.setSpan(ROOT_CONTEXT, job);
  const phase = tracer().startSpan(
    `${info.kind} ${info.phase}`,
    { attributes: { "hsmfleet.phase": info.phase } },
    jobCtx,
  );
  try {
    const result = await context.with(trace.setSpan(jobCtx, phase), fn);
    const described = describe?.(result) ?? {};
    job.setAttributes({ ...described, "hsmfleet.outcome": described["hsmfleet.outcome"] ?? "ok" });
    return result;
  } catch (err) {
    fail(phase, err);
    fail(job, err);
    job.setAttribute("hsmfleet.outcome", "error");
    throw err;
  } finally {
    phase.end();
    job.end();
  }
};

export type ItemOutcome = "ok" | "retry" | "failed" | "skipped";

export interface WorkItemInfo {
  kind: string;
  jobId: string;
  itemId: string;
  workerId: string;
  path: Buffer;
  attempt: number;
}

/** One work item being handled: its span (child of the job's phase) and its metrics. */
export interface TracedWorkItem {
  /** Runs the item's work with its span active (publishes inside carry the trace on). */
  run<T>(fn: () => Promise<T>): Promise<T>;
  /** Ends the span and records the outcome (first call wins). */
  end(outcome: ItemOutcome, err?: unknown): void;
}

/**
 * Starts tracking a received work item. `header` reads the message's NATS headers (traceparent).
 * Metrics are kept whether tracing is on or not (no-ops when no meter provider is installed).
 */
export const startWorkItem = (
  header: (key: string) => string | undefined,
  info: WorkItemInfo,
): TracedWorkItem => {
  const started = performance.now();
  const m = instruments();
  const kindAttr = { kind: info.kind };
  let span: Span | undefined;
  let ctx: Context | undefined;
  if (tracingEnabled()) {
    const parent = extractTraceContext(header);
    span = tracer().startSpan(
      `${info.kind} item`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "hsmfleet.job_id": info.jobId,
          "hsmfleet.item_id": info.itemId,
          "hsmfleet.item.kind": info.kind,
          "hsmfleet.worker_id": info.workerId,
          "hsmfleet.attempt": info.attempt,
          ...pathAttribute(info.path),
        },
      },
      parent,
    );
    ctx = withParentOfWork(trace.setSpan(parent, span), trace.getSpanContext(parent));
  }
  let ended = false;
  return {
    run: async (fn) => {
      m.itemsInFlight.add(1, kindAttr);
      try {
        return await (ctx ? context.with(ctx, fn) : fn());
      } finally {
        m.itemsInFlight.add(-1, kindAttr);
      }
    },
    end: (outcome, err) => {
      if (ended) return;
      ended = true;
      m.items.add(1, { kind: info.kind, outcome });
      m.itemDuration.record((performance.now() - started) / 1000, kindAttr);
      if (outcome === "failed") m.errors.add(1, { kind: info.kind, code: "item-failed" });
      if (!span) return;
      span.setAttribute("hsmfleet.outcome", outcome);
      if (err !== undefined) fail(span, err);
      span.end();
    },
  };
};

/** Adds attributes (files, bytes, entries, errors) to the active span: the work item's. */
export const annotateSpan = (attributes: Attributes): void => {
  if (tracingEnabled()) trace.getActiveSpan()?.setAttributes(attributes);
};

export interface FileTransferInfo {
  direction: Direction;
  jobId: string;
  path: Buffer;
  /** "file", "directory", "symlink". */
  type: string;
}

export interface FileTransferResult {
  bytes: number;
  error?: { operation: string; code: string; message: string } | undefined;
}

/**
 * Runs one file's transfer in a span (child of the active work item) and records its metrics:
 * files by outcome, errors by kind, duration, transfers in flight. Bytes are counted as they move
 * (see countBytes), not here.
 */
export const traceFileTransfer = async <R extends FileTransferResult>(
  info: FileTransferInfo,
  fn: () => Promise<R>,
): Promise<R> => {
  const m = instruments();
  const started = performance.now();
  const span = tracingEnabled()
    ? tracer().startSpan(`${info.direction} ${info.type}`, {
        attributes: {
          "hsmfleet.job_id": info.jobId,
          "hsmfleet.entry.type": info.type,
          ...pathAttribute(info.path),
        },
      })
    : undefined;
  m.transfersInFlight.add(1);
  let outcome = "error";
  try {
    const result = await fn();
    outcome = result.error ? "error" : "ok";
    if (result.error) {
      m.errors.add(1, { kind: result.error.operation, code: result.error.code });
      if (span) fail(span, new Error(`${result.error.operation}: ${result.error.message}`));
    }
    span?.setAttribute("hsmfleet.bytes", result.bytes);
    return result;
  } catch (err) {
    if (span) fail(span, err);
    throw err;
  } finally {
    m.transfersInFlight.add(-1);
    m.files.add(1, { direction: info.direction, job: info.jobId, outcome });
    if (outcome === "ok")
      m.transferDuration.record((performance.now() - started) / 1000, {
        direction: info.direction,
      });
    span?.setAttribute("hsmfleet.outcome", outcome);
    span?.end();
  }
};

/** A byte-progress callback that also counts into hsmfleet.transfer.bytes. */
export const countBytes = (
  direction: Direction,
  jobId: string,
  onBytes: (n: number) => void,
): ((n: number) => void) => {
  const counter = instruments().bytes;
  const attributes = { direction, job: jobId };
  return (n) => {
    onBytes(n);
    counter.add(n, attributes);
  };
};
