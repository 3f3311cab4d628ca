import { basename } from "node:path";
import { UsageError, displayPath } from "@hsmfleet/core";

/** How file paths appear in span attributes (HSMFLEET_TRACE_PATHS). */
export type TracePathMode = "full" | "basename" | "none";

/**
 * Default "basename": a trace shows which file it was without publishing the directory layout of
 * a (possibly shared) file system to a tracing backend; "full" for debugging, "none" where even
 * names are sensitive.
 */
export const DEFAULT_TRACE_PATHS: TracePathMode = "basename";

export const tracePathModeFromEnv = (
  env: Readonly<Record<string, string | undefined>> = process.env,
): TracePathMode => {
  const v = env["HSMFLEET_TRACE_PATHS"];
  if (v === undefined || v === "") return DEFAULT_TRACE_PATHS;
  if (v === "full" || v === "basename" || v === "none") return v;
  throw new UsageError(`HSMFLEET_TRACE_PATHS=${v} is not one of full, basename, none`);
};

/** The path as a span attribute under `mode`, or undefined when paths are not recorded. */
export const redactPath = (path: Buffer, mode: TracePathMode): string | undefined => {
  if (mode === "none") return undefined;
  const shown = displayPath(path) || ".";
  return mode === "full" ? shown : basename(shown) || shown;
};

// Secrets that can appear inside free text (error messages, URLs): SAS signatures, account keys,
// connection-string keys and bearer tokens. Query parameters of a SAS other than `sig` are not
// secret but are dropped too: a SAS URL is cut at its query string.
const SECRET_PATTERNS: ReadonlyArray<[RegExp, string]> = [
  [
    /(AccountKey|SharedAccessSignature|SharedAccessKey|sig|password|token)=([^;&\s"']+)/gi,
    "$1=[redacted]",
  ],
  [/(https?:\/\/[^\s"'?]+)\?[^\s"']*(sig|sv|se|sp)=[^\s"']*/gi, "$1?[redacted]"],
  [/(Bearer\s+)[A-Za-z0-9._~+/-]+=*/g, "$1[redacted]"],
];

/** Removes credentials from free text before it goes into a log line, a span or a metric. */
export const scrubSecrets = (text: string): string => {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
};
