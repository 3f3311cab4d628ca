import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { Attributes, Span } from "@opentelemetry/api";
import { errorMessage } from "@hsmfleet/core";
import { bytesSeries, countFile, instruments } from "./metrics.js";
import type { Direction } from "./metrics.js";
import {
  bindTraceContext,
  extractTraceContext,
  traceContextFor,
  withParentOfWork,
} from "./propagation.js";
import { redactPath, scrubSecrets, tracePathModeFromEnv } from "./redaction.js";
import type { TracePathMode } from "./redaction.js";
import { tracingEnabled } from "./state.js";
import { SERVICE_VERSION } from "./version.js";

/** One attribute object per direction: the histogram is recorded per file without allocating. */
const DIRECTION_ATTRIBUTES: Readonly<Record<Direction, Attributes>> = {
  export: { direction: "export" },
  import: { direction: "import" },
  restore: { direction: "restore" },
};

export const tracer = () => trace.getTracer("hsmfleet", SERVICE_VERSION);

let pathMode: TracePathMode | undefined;
const paths = (): TracePathMode => (pathMode ??= tracePathModeFromEnv());

export const pathAttribute = (path: Buffer): Attributes => {
  const shown = redactPath(path, paths());
  return shown === undefined ? {} : { "hsmfleet.path": shown };
};

export const fail = (span: Span, err: unknown): void => {
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
  /** The object the phase's context is bound to (publishes pass it to traceHeaders). */
  key: object;
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
    bindTraceContext(info.key, trace.setSpan(jobCtx, phase));
    const result = await fn();
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
  /** The object the item's context is bound to (the received message). */
  key: object;
  /** The span's name (default "<kind> item"; an HSM action list's is "hsm <action>"). */
  name?: string | undefined;
}

/** One work item being handled: its span (child of the job's phase) and its metrics. */
export interface TracedWorkItem {
  /** Runs the item's work (counted in flight). */
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
  if (tracingEnabled()) {
    const parent = extractTraceContext(header);
    span = tracer().startSpan(
      info.name ?? `${info.kind} item`,
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
    bindTraceContext(
      info.key,
      withParentOfWork(trace.setSpan(parent, span), trace.getSpanContext(parent)),
    );
  }
  let ended = false;
  return {
    run: async (fn) => {
      m.itemsInFlight.add(1, kindAttr);
      try {
        return await fn();
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

/** Adds attributes (files, bytes, entries, errors) to the span bound to `key` (a work item's). */
export const annotateSpan = (key: object, attributes: Attributes): void => {
  if (tracingEnabled()) trace.getSpan(traceContextFor(key))?.setAttributes(attributes);
};

export interface FileTransferInfo {
  direction: Direction;
  jobId: string;
  path: Buffer;
  /** "file", "directory", "symlink". */
  type: string;
  /** Expected size (decides whether the transfer gets its own span). */
  size: number;
  /** The work item the transfer belongs to (its span is the parent). */
  item: object;
}

/**
 * Files at least this big get a span of their own (HSMFLEET_TRACE_FILE_MIN_BYTES; default 1 MiB);
 * smaller ones are counted in their transfer item's span (files, bytes) and get a span only when
 * they fail. A fleet moves up to hundreds of thousands of small files a second: a span each would
 * cost more CPU than the upload and flood the tracing backend. 0 traces every entry.
 */
export const DEFAULT_TRACE_FILE_MIN_BYTES = 1024 * 1024;

let fileMinBytes: number | undefined;
export const traceFileMinBytes = (): number => {
  if (fileMinBytes === undefined) {
    const n = Number(process.env["HSMFLEET_TRACE_FILE_MIN_BYTES"]);
    fileMinBytes =
      process.env["HSMFLEET_TRACE_FILE_MIN_BYTES"] && Number.isInteger(n) && n >= 0
        ? n
        : DEFAULT_TRACE_FILE_MIN_BYTES;
  }
  return fileMinBytes;
};

export interface FileTransferResult {
  bytes: number;
  error?: { operation: string; code: string; message: string } | undefined;
}

/**
 * Runs one file's transfer, in a span (child of the active work item) when it is big enough or
 * fails, and records its metrics: files by outcome, errors by kind, duration, transfers in flight.
 * Bytes are counted as they move (see countBytes), not here.
 */
export const traceFileTransfer = async <R extends FileTransferResult>(
  info: FileTransferInfo,
  fn: () => Promise<R>,
): Promise<R> => {
  const m = instruments();
  // Clocks read only when something uses them (a small file's transfer is a few µs of CPU).
  const started = m.enabled ? performance.now() : 0;
  const tracing = tracingEnabled();
  const startedAt = tracing ? Date.now() : 0;
  const parent = tracing ? traceContextFor(info.item) : undefined;
  const openSpan = (): Span =>
    tracer().startSpan(
      `${info.direction} ${info.type}`,
      {
        startTime: startedAt,
        attributes: {
          "hsmfleet.job_id": info.jobId,
          "hsmfleet.entry.type": info.type,
          ...pathAttribute(info.path),
        },
      },
      parent,
    );
  let span = tracing && info.size >= traceFileMinBytes() ? openSpan() : undefined;
  m.transfersInFlight.value++;
  let outcome = "error";
  try {
    const result = await fn();
    outcome = result.error ? "error" : "ok";
    if (result.error) {
      m.errors.add(1, { kind: result.error.operation, code: result.error.code });
      // Failures are always traced, small files included.
      if (tracing) span ??= openSpan();
      if (span) fail(span, new Error(`${result.error.operation}: ${result.error.message}`));
    }
    span?.setAttribute("hsmfleet.bytes", result.bytes);
    return result;
  } catch (err) {
    if (tracing) span ??= openSpan();
    if (span) fail(span, err);
    throw err;
  } finally {
    m.transfersInFlight.value--;
    if (m.enabled) {
      countFile(m, info.direction, info.jobId, outcome);
      if (outcome === "ok")
        m.transferDuration.record(
          (performance.now() - started) / 1000,
          DIRECTION_ATTRIBUTES[info.direction],
        );
    }
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
  const series = bytesSeries(instruments(), direction, jobId);
  return (n) => {
    onBytes(n);
    series.value += n;
  };
};
