export { createLogger, silentLogger } from "./logger.js";
export type { Logger, LoggerOptions } from "./logger.js";
export { telemetryConfigFromEnv } from "./config.js";
export type { OtlpProtocol, TelemetryConfig } from "./config.js";
export { startTelemetry, shutdownTelemetry } from "./sdk.js";
export type { Telemetry, TelemetryOptions } from "./sdk.js";
export { tracingEnabled } from "./state.js";
export {
  bindTraceContext,
  extractTraceContext,
  injectTraceContext,
  traceContextFor,
  traceLogFields,
} from "./propagation.js";
export {
  DEFAULT_TRACE_FILE_MIN_BYTES,
  annotateSpan,
  countBytes,
  startWorkItem,
  traceFileTransfer,
  withJobSpan,
} from "./tracing.js";
export type {
  FileTransferInfo,
  FileTransferResult,
  ItemOutcome,
  JobSpanInfo,
  TracedWorkItem,
  WorkItemInfo,
} from "./tracing.js";
export type { Attributes } from "@opentelemetry/api";
export { startStep } from "./step-spans.js";
export type { StepInfo, StepOutcome, TracedStep } from "./step-spans.js";
export { SummedCounter, instruments, observeJob, observeWorker } from "./metrics.js";
export type {
  CounterSeries,
  Direction,
  Instruments,
  JobGaugeValues,
  WorkerGaugeSource,
} from "./metrics.js";
export {
  DEFAULT_TRACE_PATHS,
  redactPath,
  scrubSecrets,
  tracePathModeFromEnv,
} from "./redaction.js";
export type { TracePathMode } from "./redaction.js";
export {
  STARTUP_TRACE_PREFIX,
  markStartup,
  startupMarks,
  traceStartupOnExit,
} from "./startup-trace.js";
