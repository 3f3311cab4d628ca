/** Whether a tracer provider is installed: lets hot paths skip header injection and span work. */
let tracing = false;

export const tracingEnabled = (): boolean => tracing;

export const setTracingEnabled = (on: boolean): void => {
  tracing = on;
};

/** Whether a meter provider is installed: lets the per-file path skip counting. */
let metering = false;

export const metricsEnabled = (): boolean => metering;

export const setMetricsEnabled = (on: boolean): void => {
  metering = on;
};
