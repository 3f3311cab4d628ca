import test from "ava";
import { UsageError } from "@hsmfleet/core";
import { telemetryConfigFromEnv } from "../src/index.js";

test("telemetry is off unless an OTLP endpoint or exporter is configured", (t) => {
  t.deepEqual(telemetryConfigFromEnv({}), { traces: undefined, metrics: undefined });
  t.deepEqual(telemetryConfigFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }), {
    traces: "http/protobuf",
    metrics: "http/protobuf",
  });
  t.deepEqual(
    telemetryConfigFromEnv({
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://collector:4318/v1/traces",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
    }),
    { traces: "http/json", metrics: undefined },
  );
  t.deepEqual(
    telemetryConfigFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
      OTEL_METRICS_EXPORTER: "none",
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
    }),
    { traces: "http/json", metrics: undefined },
  );
  t.deepEqual(
    telemetryConfigFromEnv({
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318",
      OTEL_SDK_DISABLED: "true",
    }),
    { traces: undefined, metrics: undefined },
  );
});

test("gRPC is refused with a message naming the variable", (t) => {
  const err = t.throws(
    () =>
      telemetryConfigFromEnv({
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
      }),
    { instanceOf: UsageError },
  );
  t.regex(err.message, /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported/);
});
