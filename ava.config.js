// One ava run over the compiled tests of every package and of test/ (end-to-end).
// Compiled JS (not tsx) so the native addon and child processes behave exactly as in production.
//
// `npm test` (scripts/run-tests.mjs) runs the suite in two phases so that it is deterministic on a
// 2-CPU machine: HSMFLEET_TEST_PHASE=shared runs every file except the heavy end-to-end files below,
// two files at a time; HSMFLEET_TEST_PHASE=solo then runs the heavy files one at a time, each with the
// machine to itself (they start several worker processes, a NATS cluster, or npm, and their kill
// windows and service deadlines were missed now and then when two of them overlapped). Without the
// variable (`npx ava <file>`) every file is selected, as before.
const soloFiles = [
  "test/dist/e2e/release.test.js",
  "test/dist/e2e/sync-faults.test.js",
  "test/dist/e2e/ledger-wide.test.js",
  "test/dist/e2e/import-resume.test.js",
  "test/dist/e2e/faults-cluster.test.js",
  "test/dist/e2e/path-safety-loop.test.js",
];

const all = ["packages/*/dist/test/**/*.test.js", "test/dist/e2e/**/*.test.js"];
const phase = process.env.HSMFLEET_TEST_PHASE;

export default {
  files:
    phase === "solo"
      ? soloFiles
      : phase === "shared"
        ? [...all, ...soloFiles.map((f) => `!${f}`)]
        : all,
  workerThreads: false,
  concurrency: phase === "solo" ? 1 : 2,
  timeout: "3m",
  environmentVariables: {
    HSMFLEET_LOG_LEVEL: "warn",
  },
};
