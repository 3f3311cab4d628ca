/** Whether a tracer provider is installed: lets hot paths skip header injection and span work. */
let tracing = false;

export const tracingEnabled = (): boolean => tracing;

export const setTracingEnabled = (on: boolean): void => {
  tracing = on;
};
