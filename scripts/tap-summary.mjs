// Reads ava's TAP output on stdin, passes it through, and ends with one line CI understands:
// "N passed, N failed" (preceded by "N skipped" when any were skipped). Exit code: 1 when any test failed
// or no plan/summary was seen (the test run crashed), else 0.
import { createInterface } from "node:readline";

let passed = 0;
let failed = 0;
let skipped = 0;
let sawSummary = false;
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  process.stdout.write(`${line}\n`);
  if (/^ok \d+/.test(line)) {
    if (/# SKIP/i.test(line)) skipped++;
    else passed++;
  } else if (/^not ok \d+/.test(line)) {
    if (/# TODO/i.test(line)) skipped++;
    else failed++;
  } else if (/^# (pass|fail|tests) \d+/.test(line)) {
    sawSummary = true;
  }
}
if (!sawSummary && failed === 0) failed = 1; // ava died before its summary
if (skipped > 0) console.log(`${skipped} skipped`);
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
