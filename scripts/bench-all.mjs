#!/usr/bin/env node
// `npm run bench`: runs every compiled benchmark (test/dist/bench/*.bench.js) one after the
// other, then gathers their result files (bench/results/<name>.json) into
// bench/results/latest.json and a markdown table bench/results/latest.md. A benchmark that fails
// is reported as failed and the others still run; the exit code is 1 if any failed.
// HSMFLEET_BENCH_ONLY=fleet,scan runs only those.
import { spawnSync } from "node:child_process";
import { readFile, readdir, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const benchDir = join(root, "test", "dist", "bench");
const resultsDir = join(root, "bench", "results");
const only = (process.env.HSMFLEET_BENCH_ONLY ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter(Boolean);

const names = (await readdir(benchDir))
  .filter((f) => f.endsWith(".bench.js"))
  .map((f) => f.slice(0, -".bench.js".length))
  .filter((n) => only.length === 0 || only.includes(n))
  .sort();
const status = {};
for (const name of names) {
  process.stderr.write(`\n=== ${name} ===\n`);
  const started = Date.now();
  const run = spawnSync(process.execPath, [join(benchDir, `${name}.bench.js`)], {
    stdio: "inherit",
  });
  status[name] = {
    exitCode: run.status,
    signal: run.signal,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

await mkdir(resultsDir, { recursive: true });
const latest = { date: new Date().toISOString(), ran: status };
const rows = [];
for (const file of (await readdir(resultsDir)).sort()) {
  if (!file.endsWith(".json") || file === "latest.json") continue;
  const name = file.slice(0, -".json".length);
  let result;
  try {
    result = JSON.parse(await readFile(join(resultsDir, file), "utf8"));
  } catch {
    continue;
  }
  latest[name] = result;
  const ran = status[name] ? (status[name].exitCode === 0 ? "ran" : "FAILED") : "earlier run";
  const when = result.date ?? "?";
  if (result.skipped) {
    rows.push(`| ${name} | skipped: ${result.skipped} | | | ${ran}, ${when} |`);
  } else if (Array.isArray(result.summary)) {
    for (const s of result.summary) {
      const ratio = typeof s.ratio === "number" ? s.ratio.toFixed(2) : "–";
      rows.push(
        `| ${name}: ${s.figure} | ${s.value} | ${ratio} | ${s.against} | ${ran}, ${when} |`,
      );
    }
  } else {
    rows.push(`| ${name} | see bench/results/${file} | | | ${ran}, ${when} |`);
  }
}
for (const [name, s] of Object.entries(status))
  if (s.exitCode !== 0 && !(name in latest))
    rows.push(`| ${name} | failed (exit ${s.exitCode ?? s.signal}), no result file | | | |`);
await writeFile(join(resultsDir, "latest.json"), `${JSON.stringify(latest, null, 2)}\n`);
const table = [
  `# Benchmarks (${latest.date})`,
  "",
  "| figure | value | ratio | against | run |",
  "|---|---|---|---|---|",
  ...rows,
  "",
].join("\n");
await writeFile(join(resultsDir, "latest.md"), table);
process.stdout.write(table);
process.exitCode = Object.values(status).some((s) => s.exitCode !== 0) ? 1 : 0;
