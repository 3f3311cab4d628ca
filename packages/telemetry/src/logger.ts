import { pino } from "pino";
import type { Logger } from "pino";

export type { Logger } from "pino";

export interface LoggerOptions {
  /** "coordinator", "worker", "cli". */
  role: string;
  /** Default: $HSMFLEET_LOG_LEVEL, else "info". */
  level?: string | undefined;
  /** Where lines go; default stderr (stdout is for command output such as --json). */
  destination?: NodeJS.WritableStream | undefined;
}

/** JSON lines on stderr, one logger per process role. Credentials are never passed to a logger. */
export const createLogger = (options: LoggerOptions): Logger =>
  pino(
    {
      level: options.level ?? process.env["HSMFLEET_LOG_LEVEL"] ?? "info",
      base: { role: options.role, pid: process.pid },
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
