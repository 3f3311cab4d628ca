import { pino } from "pino";
import type { Logger } from "pino";
import { trace } from "@opentelemetry/api";
import { scrubSecrets } from "./redaction.js";
import { tracingEnabled } from "./state.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** "coordinator", "worker", "cli". */
  role: string;
  /** Default: $HSMFLEET_LOG_LEVEL, else "info". */
  level?: string | undefined;
  /** Where lines go; default stderr (stdout is for command output such as --json). */
  destination?: NodeJS.WritableStream | undefined;
}

/** trace_id/span_id of the active span, on every line logged while one is active. */
const traceFields = (): Record<string, string> => {
  if (!tracingEnabled()) return {};
  const span = trace.getActiveSpan()?.spanContext();
  return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
};

/**
 * JSON lines on stderr, one logger per process role. Credentials are never passed to a logger;
 * as a second line of defence, known secret fields are redacted and every line is scrubbed of
 * SAS signatures, account keys and tokens (an error message quoting a URL, say).
 */
export const createLogger = (options: LoggerOptions): Logger =>
  pino(
    {
      level: options.level ?? process.env["HSMFLEET_LOG_LEVEL"] ?? "info",
      base: { role: options.role, pid: process.pid },
      mixin: traceFields,
      hooks: { streamWrite: scrubSecrets },
      redact: {
        paths: [
          "password",
          "token",
          "accountKey",
          "connectionString",
          "sas",
          "*.password",
          "*.token",
        ],
        censor: "[redacted]",
      },
    },
    (options.destination as pino.DestinationStream | undefined) ??
      pino.destination({ dest: 2, sync: true }),
  );

/** A logger that drops everything (tests, library callers that bring none). */
export const silentLogger = (): Logger => pino({ level: "silent" });
