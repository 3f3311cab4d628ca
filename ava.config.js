// One ava run over the compiled tests of every package and of test/ (end-to-end).
// Compiled JS (not tsx) so the native addon and child processes behave exactly as in production.
export default {
  files: ["packages/*/dist/test/**/*.test.js", "test/dist/e2e/**/*.test.js"],
  workerThreads: false,
  concurrency: 2,
  timeout: "3m",
  environmentVariables: {
    HSMFLEET_LOG_LEVEL: "warn",
  },
};
