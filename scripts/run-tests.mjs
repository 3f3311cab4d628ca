// The README's test command (`npm test`, after the build): ava in two phases, the shared phase (every
// file but the heavy end-to-end ones, two files at a time) and the solo phase (the heavy files one at
// a time), as ava.config.js describes. Arguments are passed to both ava runs (e.g. `--tap`). With
// file arguments it is one plain ava run over those files. Exit code: non-zero when either phase
// failed; a phase that died without its summary also prints a TAP "not ok" line, so a TAP reader
// counts it as a failure.
import { spawn } from "node:child_process";

const args = process.argv.slice(2);
const tap = args.includes("--tap");
const files = args.filter((a) => !a.startsWith("-"));

const ava = (phase, extra) =>
  new Promise((resolve) => {
    const env = { ...process.env };
    if (phase) env.HSMFLEET_TEST_PHASE = phase;
    else delete env.HSMFLEET_TEST_PHASE;
    const child = spawn("npx", ["--no-install", "ava", ...extra], {
      env,
      stdio: ["ignore", "pipe", "inherit"],
    });
    let sawSummary = false;
    let tail = "";
    child.stdout.on("data", (chunk) => {
      tail = (tail + chunk.toString("utf8")).slice(-4096);
      if (/^# (pass|fail|tests) \d+/m.test(tail)) sawSummary = true;
      process.stdout.write(chunk);
    });
    child.on("close", (code, signal) => {
      if (tap && !sawSummary) {
        process.stdout.write(
          `not ok 1 - ava ${phase ?? ""} phase ended (${signal ?? `code ${code}`}) without a summary\n`,
        );
      }
      resolve(code ?? 1);
    });
  });

if (files.length > 0) {
  process.exitCode = await ava(undefined, args);
} else {
  const started = Date.now();
  const shared = await ava("shared", args);
  const mid = Date.now();
  const solo = await ava("solo", args);
  const s = (ms) => `${Math.round(ms / 1000)} s`;
  process.stderr.write(
    `run-tests: shared phase ${s(mid - started)} (exit ${shared}), solo phase ${s(Date.now() - mid)} (exit ${solo})\n`,
  );
  process.exitCode = shared !== 0 ? shared : solo;
}
