import { hostname } from "node:os";
import { telemetryConfigFromEnv } from "./config.js";
import type { OtlpProtocol, TelemetryConfig } from "./config.js";
import { setMetricsEnabled, setTracingEnabled } from "./state.js";

import { SERVICE_VERSION } from "./version.js";

export interface TelemetryOptions {
  /** "coordinator" or "worker": the service name is hsmfleet-<role> unless OTEL_SERVICE_NAME says otherwise. */
  role: string;
  /** VM name (resource attributes host.name and hsmfleet.vm_name). Default: the host name. */
  vmName?: string | undefined;
  /** Worker id (resource attributes service.instance.id and hsmfleet.worker_id), for standalone workers. */
  workerId?: string | undefined;
  /** Serve Prometheus metrics on this port (all metrics, whether or not OTLP is configured). 0/undefined = off. */
  metricsPort?: number | undefined;
  /** Address the metrics endpoint listens on. Default $HSMFLEET_METRICS_HOST, else 0.0.0.0. */
  metricsHost?: string | undefined;
  /** Default process.env. */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

export interface Telemetry {
  readonly config: TelemetryConfig;
  /** The Prometheus endpoint's port when one runs. */
  readonly metricsPort: number | undefined;
  /** Exports what is buffered now (spans; metrics to OTLP), without stopping. */
  flush(): Promise<void>;
  /** Flushes what is buffered and stops exporting. */
  shutdown(): Promise<void>;
}

let current: Telemetry | undefined;

/**
 * Sets up tracing and metrics from the standard OTEL_* variables (see config.ts) plus an optional
 * Prometheus endpoint. Off unless configured: with nothing configured it loads no SDK module at all
 * (CLI start time) and every span and instrument stays a no-op. One per process.
 */
export const startTelemetry = async (options: TelemetryOptions): Promise<Telemetry> => {
  if (current) return current;
  const env = options.env ?? process.env;
  const config = telemetryConfigFromEnv(env);
  const metricsPort = options.metricsPort || undefined;
  if (!config.traces && !config.metrics && !metricsPort) {
    current = {
      config,
      metricsPort: undefined,
      flush: () => Promise.resolve(),
      shutdown: () => {
        current = undefined;
        return Promise.resolve();
      },
    };
    return current;
  }
  const api = await import("@opentelemetry/api");
  const { resourceFromAttributes, detectResources, envDetector } =
    await import("@opentelemetry/resources");
  const vmName = options.vmName ?? hostname();
  const resource = resourceFromAttributes({
    "service.name": `hsmfleet-${options.role}`,
    "service.version": SERVICE_VERSION,
    "service.instance.id": options.workerId ?? `${vmName}:${process.pid}`,
    "host.name": vmName,
    "hsmfleet.role": options.role,
    "hsmfleet.vm_name": vmName,
    ...(options.workerId ? { "hsmfleet.worker_id": options.workerId } : {}),
    // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win. No process detector: it would put the
    // command line (which can hold a connection string) into every span.
  }).merge(detectResources({ detectors: [envDetector] }));

  const stops: Array<() => Promise<void>> = [];
  const flushes: Array<() => Promise<void>> = [];
  if (config.traces) {
    const { BasicTracerProvider, BatchSpanProcessor } =
      await import("@opentelemetry/sdk-trace-base");
    const { W3CTraceContextPropagator } = await import("@opentelemetry/core");
    const { OTLPTraceExporter } = await traceExporterModule(config.traces);
    const provider = new BasicTracerProvider({
      resource,
      spanProcessors: [
        new BatchSpanProcessor(new OTLPTraceExporter({ url: otlpUrl(env, "TRACES") }), {
          // One span per file: a fleet ends thousands a second, so the queue is deeper than the
          // SDK's 2,048 (spans beyond it are dropped, never blocking a transfer).
          maxQueueSize: envInt(env, "OTEL_BSP_MAX_QUEUE_SIZE", 16_384),
          maxExportBatchSize: envInt(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048),
          scheduledDelayMillis: envInt(env, "OTEL_BSP_SCHEDULE_DELAY", 5000),
          exportTimeoutMillis: envInt(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000),
        }),
      ],
    });
    // No context manager (AsyncLocalStorage): contexts are passed explicitly (propagation.ts).
    api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    api.trace.setGlobalTracerProvider(provider);
    setTracingEnabled(true);
    flushes.push(() => provider.forceFlush());
    stops.push(async () => {
      setTracingEnabled(false);
      await provider.shutdown();
      api.trace.disable();
      api.propagation.disable();
    });
  }
  let boundPort: number | undefined;
  if (config.metrics || metricsPort) {
    const { MeterProvider, PeriodicExportingMetricReader } =
      await import("@opentelemetry/sdk-metrics");
    type Reader = ConstructorParameters<typeof MeterProvider>[0] extends infer C
      ? C extends { readers?: Array<infer R> }
        ? R
        : never
      : never;
    const readers: Reader[] = [];
    if (config.metrics) {
      const { OTLPMetricExporter } = await metricExporterModule(config.metrics);
      const intervalMs = envInt(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000);
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter({ url: otlpUrl(env, "METRICS") }),
          exportIntervalMillis: intervalMs,
          exportTimeoutMillis: Math.min(
            envInt(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000),
            intervalMs,
          ),
        }),
      );
    }
    if (metricsPort) {
      const { PrometheusExporter } = await import("@opentelemetry/exporter-prometheus");
      const host = options.metricsHost ?? (env["HSMFLEET_METRICS_HOST"] || "0.0.0.0");
      const exporter = await new Promise<InstanceType<typeof PrometheusExporter>>(
        (resolve, reject) => {
          const e: InstanceType<typeof PrometheusExporter> = new PrometheusExporter(
            {
              port: metricsPort,
              host,
              withoutScopeInfo: true,
              // Per-VM and per-worker panels without a join on target_info.
              withResourceConstantLabels:
                /^(service\.instance\.id|hsmfleet\.vm_name|hsmfleet\.role)$/,
            },
            (err) => (err ? reject(err) : resolve(e)),
          );
        },
      );
      readers.push(exporter);
      boundPort = metricsPort;
    }
    const provider = new MeterProvider({
      resource,
      readers,
      // A view over hsmfleet's instruments makes one storage that both readers (Prometheus, OTLP)
      // collect from: without one the SDK keeps a storage per reader and hashes a recording's
      // attributes once for each, on every recording (the duration histogram: once per file).
      // Its aggregation is the default (the instruments' bucket advice), whatever a reader prefers.
      views: [{ meterName: "hsmfleet" }],
    });
    setMetricsEnabled(true);
    api.metrics.setGlobalMeterProvider(provider);
    flushes.push(() => provider.forceFlush());
    stops.push(async () => {
      setMetricsEnabled(false);
      await provider.shutdown();
      api.metrics.disable();
    });
  }
  current = {
    config,
    metricsPort: boundPort,
    flush: async () => {
      await Promise.all(flushes.map((f) => f().catch(() => undefined)));
    },
    shutdown: async () => {
      current = undefined;
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
    },
  };
  return current;
};

/** Shuts down what startTelemetry set up (nothing if it was not called). */
export const shutdownTelemetry = async (): Promise<void> => {
  await current?.shutdown();
};

/**
 * The signal's URL per the specification (its own endpoint as given, else the generic endpoint
 * plus /v1/<signal>), from `env` so that TelemetryOptions.env is honoured; undefined = the
 * exporter's default (http://localhost:4318/v1/<signal>). Headers, timeouts and TLS settings are
 * read by the exporters from process.env.
 */
const otlpUrl = (
  env: Readonly<Record<string, string | undefined>>,
  signal: "TRACES" | "METRICS",
): string | undefined => {
  const own = env[`OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`];
  if (own) return own;
  const base = env["OTEL_EXPORTER_OTLP_ENDPOINT"];
  return base ? `${base.replace(/\/+$/, "")}/v1/${signal.toLowerCase()}` : undefined;
};

/** A positive integer variable (the SDK 2.x processors no longer read these themselves). */
const envInt = (
  env: Readonly<Record<string, string | undefined>>,
  name: string,
  fallback: number,
): number => {
  const n = Number(env[name]);
  return Number.isInteger(n) && n > 0 ? n : fallback;
};

const traceExporterModule = (p: OtlpProtocol) =>
  p === "http/json"
    ? import("@opentelemetry/exporter-trace-otlp-http")
    : import("@opentelemetry/exporter-trace-otlp-proto");

const metricExporterModule = (p: OtlpProtocol) =>
  p === "http/json"
    ? import("@opentelemetry/exporter-metrics-otlp-http")
    : import("@opentelemetry/exporter-metrics-otlp-proto");
