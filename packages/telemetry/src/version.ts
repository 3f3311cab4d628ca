/** Reported as service.version and instrumentation scope version. */
export const SERVICE_VERSION = "0.1.0";
