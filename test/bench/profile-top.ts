/**
 * Prints the top self-time functions of V8 CPU profiles (`node profile-top.js FILE…`), for the
 * control-plane benchmark's HSMFLEET_CP_PROFILE output.
 */
import { readFile } from "node:fs/promises";
import type { Profiler } from "node:inspector";
import { summarizeProfile } from "./cpu-profile.js";

for (const file of process.argv.slice(2)) {
  const profile = JSON.parse(await readFile(file, "utf8")) as Profiler.Profile;
  const { totalMs, top, categories } = summarizeProfile(profile, 30);
  process.stdout.write(`${file}: ${(totalMs / 1000).toFixed(1)} s\n`);
  for (const c of categories)
    process.stdout.write(
      `  [${c.name}] ${c.selfMs.toFixed(0)} ms ${(c.share * 100).toFixed(1)}%\n`,
    );
  for (const l of top)
    process.stdout.write(
      `  ${l.selfMs.toFixed(0).padStart(6)} ms ${(l.share * 100).toFixed(1).padStart(5)}%  ${l.name}  ${l.where}\n`,
    );
}
