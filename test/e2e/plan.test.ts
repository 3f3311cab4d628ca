import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import test from "ava";
import { tempDir } from "@hsmfleet/testkit";
import { runCli } from "./helpers.js";

const PLAN = ["plan", "--target", "7.5GiB/s", "--vm-size", "Standard_D32ds_v5", "--json"];

test("plan answers the same wherever it runs: a bench/results/latest.json in the working directory changes nothing", async (t) => {
  const dir = await tempDir();
  t.teardown(() => dir.cleanup());
  // A checkout of the repository: the benchmark's loopback figure (1.0) lies in the working dir.
  const repo = join(dir.path, "repo");
  await mkdir(join(repo, "bench", "results"), { recursive: true });
  await writeFile(
    join(repo, "bench", "results", "latest.json"),
    JSON.stringify({ fleet: { perVmEfficiency: 1 } }),
  );
  const elsewhere = join(dir.path, "elsewhere");
  await mkdir(elsewhere);
  const plans = [];
  for (const cwd of [repo, elsewhere]) {
    const run = await runCli(PLAN, { cwd });
    t.is(run.code, 0, run.stderr);
    plans.push(
      JSON.parse(run.stdout) as { vms: number; efficiency: number; efficiencySource: string },
    );
  }
  t.deepEqual(plans[0], plans[1]);
  // The shipped figure, documented with its source in docs/plan.md.
  t.is(plans[0]!.efficiency, 0.7);
  t.is(plans[0]!.vms, 6);
  t.regex(plans[0]!.efficiencySource, /docs\/plan\.md/);
  // --efficiency still overrides it.
  const given = await runCli([...PLAN, "--efficiency", "0.9"], { cwd: repo });
  t.like(JSON.parse(given.stdout), { efficiency: 0.9, efficiencySource: "--efficiency" });
});

test("every option plan's help names exists: --list-sizes lists the shipped VM sizes", async (t) => {
  const help = await runCli(["plan", "--help"]);
  t.is(help.code, 0);
  const named = new Set(help.stdout.match(/--[a-z][a-z-]+/g));
  const declared = new Set(
    [...help.stdout.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z-]+)/gm)].map((m) => m[1]),
  );
  for (const option of named) t.true(declared.has(option), `${option} is named but not an option`);
  const sizes = await runCli(["plan", "--list-sizes"]);
  t.is(sizes.code, 0, sizes.stderr);
  t.regex(sizes.stdout, /Standard_D32ds_v5\s+32\s+16 Gbit\/s/);
  t.regex(sizes.stdout, /Standard_D16ds_v5/);
});
