import type { Attributes, Span } from "@opentelemetry/api";
import { fail, pathAttribute, traceFileMinBytes, tracer } from "./tracing.js";
import { traceContextFor } from "./propagation.js";
import { tracingEnabled } from "./state.js";

/**
 * Outcomes of a step: "ok", "error" (failed, always traced), or a kind-specific word ("skipped",
 * "cancelled").
 */
export type StepOutcome = string;

export interface StepInfo {
  jobId: string;
  /** The file the step is about (redacted as HSMFLEET_TRACE_PATHS says). */
  path?: Buffer | undefined;
  /**
   * Bytes the step will move, when known up front: at least HSMFLEET_TRACE_FILE_MIN_BYTES opens
   * the span at once. Unknown (undefined): decided when it ends, from the bytes it moved.
   */
  size?: number | undefined;
  attributes?: Attributes | undefined;
}

/**
 * One step of a work item (a chunk's byte range, a commit, one HSM action on one file) traced as a
 * child of the item's span, under the rule file transfers follow: a span when it moves at least
 * HSMFLEET_TRACE_FILE_MIN_BYTES or fails; otherwise it is only counted in its item's span. A step
 * that ends below the threshold costs no span at all (the span is made at the end, back-dated to
 * the step's start, only when it is wanted).
 */
export interface TracedStep {
  /** Adds attributes (kept for the span if one is made). */
  set(attributes: Attributes): void;
  /** Ends the step: `bytes` moved, `outcome`; `err` (or outcome "error") makes it traced. */
  end(outcome: StepOutcome, options?: { bytes?: number | undefined; err?: unknown }): void;
}

const NOOP_STEP: TracedStep = { set: () => undefined, end: () => undefined };

/** Starts a step named `name` ("export chunk", "archive file") under the work item bound to `item`. */
export const startStep = (item: object, name: string, info: StepInfo): TracedStep => {
  if (!tracingEnabled()) return NOOP_STEP;
  const startTime = Date.now();
  const minBytes = traceFileMinBytes();
  // Built only for a span that is made (a step counted in its item costs no path formatting).
  let more: Attributes | undefined;
  const open = (): Span =>
    tracer().startSpan(
      name,
      {
        startTime,
        attributes: {
          "hsmfleet.job_id": info.jobId,
          ...(info.path ? pathAttribute(info.path) : {}),
          ...info.attributes,
          ...more,
        },
      },
      traceContextFor(item),
    );
  let span = info.size !== undefined && info.size >= minBytes ? open() : undefined;
  let ended = false;
  return {
    set: (attributes) => {
      if (span) span.setAttributes(attributes);
      else more = { ...more, ...attributes };
    },
    end: (outcome, options) => {
      if (ended) return;
      ended = true;
      const failed = outcome === "error" || options?.err !== undefined;
      const bytes = options?.bytes;
      if (!span && (failed || (bytes !== undefined && bytes >= minBytes))) span = open();
      if (!span) return;
      if (bytes !== undefined) span.setAttribute("hsmfleet.bytes", bytes);
      span.setAttribute("hsmfleet.outcome", outcome);
      if (options?.err !== undefined) fail(span, options.err);
      span.end();
    },
  };
};
