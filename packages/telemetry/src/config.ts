import { UsageError } from "@hsmfleet/core";

/** The OTLP encodings hsmfleet exports with (both over HTTP; gRPC is not shipped). */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** What the standard OTEL_* variables ask for; undefined = that signal is not exported over OTLP. */
export interface TelemetryConfig {
  traces: OtlpProtocol | undefined;
  metrics: OtlpProtocol | undefined;
}

type Env = Readonly<Record<string, string | undefined>>;

const list = (value: string | undefined): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "");

const protocol = (env: Env, signal: "TRACES" | "METRICS"): OtlpProtocol => {
  const name = `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`;
  const given = env[name] || env["OTEL_EXPORTER_OTLP_PROTOCOL"] || "http/protobuf";
  if (given === "http/protobuf" || given === "http/json") return given;
  throw new UsageError(
    `${env[name] ? name : "OTEL_EXPORTER_OTLP_PROTOCOL"}=${given} is not supported: use http/protobuf or http/json`,
  );
};

/**
 * Reads the standard variables. A signal is exported when its OTEL_<SIGNAL>_EXPORTER lists
 * "otlp", or when that variable is unset and an OTLP endpoint is configured (the generic
 * OTEL_EXPORTER_OTLP_ENDPOINT or the signal's own). Telemetry is off by default: nothing is loaded
 * and nothing is sent unless one of these is set. OTEL_SDK_DISABLED=true turns everything off.
 */
export const telemetryConfigFromEnv = (env: Env = process.env): TelemetryConfig => {
  if ((env["OTEL_SDK_DISABLED"] ?? "").toLowerCase() === "true")
    return { traces: undefined, metrics: undefined };
  const wanted = (signal: "TRACES" | "METRICS"): boolean => {
    const exporters = list(env[`OTEL_${signal}_EXPORTER`]);
    if (exporters.length > 0) return exporters.includes("otlp");
    return Boolean(
      env["OTEL_EXPORTER_OTLP_ENDPOINT"] || env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`],
    );
  };
  return {
    traces: wanted("TRACES") ? protocol(env, "TRACES") : undefined,
    metrics: wanted("METRICS") ? protocol(env, "METRICS") : undefined,
  };
};
