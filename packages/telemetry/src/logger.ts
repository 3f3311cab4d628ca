import { pino } from "pino";
import type { Logger } from "pino";
import { prettyDestination } from "./pretty.js";
import { scrubSecrets } from "./redaction.js";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** "coordinator", "worker", "cli". */
  role: string;
  /** Default: $HSMFLEET_LOG_LEVEL, else "info". */
  level?: string | undefined;
  /** Where lines go; default stderr (stdout is for command output such as --json), pretty on a terminal. */
  destination?: NodeJS.WritableStream | undefined;
}

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
      // Pretty lines for a person at a terminal; JSON for everything else (or HSMFLEET_LOG_FORMAT=json).
      (process.stderr.isTTY && process.env["HSMFLEET_LOG_FORMAT"] !== "json"
        ? prettyDestination(process.stderr)
        : pino.destination({ dest: 2, sync: true })),
  );

/** A logger that drops everything (tests, library callers that bring none). */
export const silentLogger = (): Logger => pino({ level: "silent" });
