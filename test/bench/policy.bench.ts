/**
 * `npm run bench:policy`: policy evaluation rate (entries/s of the distributed evaluation walk,
 * `hsmfleet policy run NAME --dry-run`) with 1 and 2 standalone workers, beside GNU find with an
 * equivalent -mmin/-size filter on the same warm tree, and the coordinator's peak RSS on trees of
 * two sizes (it must stay flat: the merge keeps a bounded top-K).
 *
 * Environment:
 *   HSMFLEET_BENCH_SIZES   comma-separated file counts (default "100000,1000000")
 *   HSMFLEET_BENCH_RUNS    repetitions per configuration (default 3): each policy run is paired
 *                          with a find run just before it (alternating), and the median of the
 *                          paired ratios is reported with the load average seen
 *   HSMFLEET_BENCH_DIR     keep the generated trees here and reuse them
 */
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import { HsmFlag } from "@hsmfleet/core";
import { generateTree, startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { TreeSpec } from "@hsmfleet/testkit";
import {
  LineTail,
  ProcSampler,
  closed,
  requireBundle,
  cpuSeconds,
  exitedChildrenCpuSeconds,
  int,
  median,
  killAllChildren,
  mib,
  spawnTracked,
  stopChild,
} from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** The command a user runs (the launcher: the one-file bundle with its code cache, issue 17). */
const CLI_BIN = join(REPO_ROOT, "packages", "cli", "bin", "hsmfleet.js");
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "policy.json");
const SIZES = (process.env["HSMFLEET_BENCH_SIZES"] ?? "100000,1000000").split(",").map(Number);
const RUNS = Number(process.env["HSMFLEET_BENCH_RUNS"] ?? "3");
const log = (s: string) => process.stderr.write(`${s}\n`);
const env = { ...process.env, HSMFLEET_LOG_LEVEL: "info" };

/** 1,000 files a directory, 10 directories a level: files / 1000 leaf directories. */
const specFor = (files: number): TreeSpec => {
  const dirs = Math.max(1, Math.round(files / 1000));
  const fanout = dirs <= 10 ? dirs : Math.ceil(Math.sqrt(dirs));
  return {
    depth: dirs <= 10 ? 1 : 2,
    fanout,
    filesPerDir: Math.round(files / (dirs <= 10 ? fanout : fanout * fanout + fanout + 1)),
    sizes: [0, 100, 4096],
    hsm: {
      xattrName: "trusted.hsm",
      states: [
        null,
        { flags: HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Dirty, archiveId: 1 },
        { flags: HsmFlag.Exists | HsmFlag.Archived, archiveId: 1 },
      ],
    },
  };
};

const POLICY = (root: string) => `
fileclasses:
  small: { size_max: 1KiB }
policies:
  bench:
    action: archive
    root: ${root}
    rules: [{ classes: [small], last_mod: 0s }]
`;

const startWorker = async (url: string): Promise<ChildProcess> => {
  const child = spawnTracked(
    process.execPath,
    [CLI_BIN, "--nats", url, "worker", "--concurrency", "16"],
    {
      stdio: ["ignore", "ignore", "pipe"],
      env,
    },
  );
  const stderr = new LineTail(child.stderr);
  await Promise.race([
    stderr.next((l) => l.includes('"msg":"worker started"')),
    sleep(120_000).then(() => {
      throw new Error(`worker did not start:\n${stderr.text()}`);
    }),
  ]);
  return child;
};

const find = async (
  root: string,
): Promise<{ entries: number; matched: number; seconds: number; cpuSeconds: number }> => {
  const cpu0 = exitedChildrenCpuSeconds();
  const t0 = performance.now();
  const child = spawnTracked(
    "find",
    [root, "-type", "f", "-mmin", "+0", "-size", "-1025c", "-printf", "%s %T@ %p\\n"],
    {
      stdio: ["ignore", "pipe", "ignore"],
    },
  );
  let matched = 0;
  child.stdout?.on("data", (c: Buffer) => {
    for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) matched++;
  });
  await closed(child);
  const seconds = (performance.now() - t0) / 1000;
  return { entries: 0, matched, seconds, cpuSeconds: exitedChildrenCpuSeconds() - cpu0 };
};

interface RunResult {
  entries: number;
  eligible: number;
  seconds: number;
  entriesPerSecond: number;
  coordinatorPeakRssBytes: number;
  /** The command's CPU seconds (user + system), exact: read from this process's waited children. */
  commandCpuSeconds: number;
  wallSeconds: number;
}

const policyRun = async (url: string, file: string): Promise<RunResult> => {
  const cpu0 = exitedChildrenCpuSeconds();
  const t0 = performance.now();
  const child = spawnTracked(
    process.execPath,
    [
      CLI_BIN,
      "--nats",
      url,
      "--workers",
      "0",
      "policy",
      "run",
      "bench",
      "--dry-run",
      "--json",
      "--policies",
      file,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, HSMFLEET_LOG_LEVEL: "warn" } },
  );
  const sampler = new ProcSampler(child.pid!, 50);
  let out = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  const stderr = new LineTail(child.stderr);
  const exit = await closed(child);
  const wallSeconds = (performance.now() - t0) / 1000;
  const commandCpuSeconds = exitedChildrenCpuSeconds() - cpu0;
  const s = sampler.stop();
  if (exit.code !== 0) throw new Error(`policy run exited ${exit.code}: ${stderr.text()}`);
  const summary = JSON.parse(out) as { entries: number; eligible: number; evaluationMs: number };
  const seconds = summary.evaluationMs / 1000;
  log(
    `    ${int(summary.entries)} entries, ${int(summary.eligible)} eligible in ${seconds.toFixed(1)} s (wall ${((performance.now() - t0) / 1000).toFixed(1)} s), coordinator peak RSS ${mib(s.peakRssBytes)}`,
  );
  return {
    entries: summary.entries,
    eligible: summary.eligible,
    seconds,
    entriesPerSecond: summary.entries / seconds,
    coordinatorPeakRssBytes: s.peakRssBytes,
    commandCpuSeconds,
    wallSeconds,
  };
};

const main = async () => {
  const base = process.env["HSMFLEET_BENCH_DIR"];
  const tmp = base ? undefined : await tempDir();
  const dir = base ?? tmp!.path;
  requireBundle(CLI_BIN);
  const nats = await startNatsServer();
  const results: object[] = [];
  try {
    for (const files of SIZES) {
      const root = join(dir, `policy-${files}`);
      if (!existsSync(join(root, ".done"))) {
        log(`generating ${int(files)} files under ${root}…`);
        await mkdir(root, { recursive: true });
        const t0 = performance.now();
        await generateTree(join(root, "tree"), specFor(files));
        await writeFile(join(root, ".done"), "");
        log(`  ${((performance.now() - t0) / 1000).toFixed(0)} s`);
      }
      const tree = join(root, "tree");
      const policyFile = join(root, "policies.yaml");
      await writeFile(policyFile, POLICY(tree));
      await find(tree); // warm the cache
      const row: Record<string, unknown> = { files };
      for (const workers of [1, 2]) {
        const started: ChildProcess[] = [];
        for (let w = 0; w < workers; w++) started.push(await startWorker(nats.url));
        const runs: Array<
          RunResult & {
            findSeconds: number;
            findCpuSeconds: number;
            ratioToFind: number;
            workerCpuSeconds: number;
            natsCpuSeconds: number;
            cpuRatioToFind: number;
          }
        > = [];
        const loads: number[] = [];
        log(`  policy evaluation, ${workers} worker${workers > 1 ? "s" : ""}:`);
        for (let i = 0; i < RUNS; i++) {
          loads.push(loadavg()[0]!);
          // Paired with find just before it: the machine may be shared, read the ratios.
          const f = await find(tree);
          const cpu0 = started.map((c) => cpuSeconds(c.pid!) ?? 0);
          const natsCpu0 = cpuSeconds(nats.pid) ?? 0;
          const r = await policyRun(nats.url, policyFile);
          const workerCpuSeconds = started.reduce(
            (sum, c, w) => sum + (cpuSeconds(c.pid!) ?? 0) - cpu0[w]!,
            0,
          );
          const natsCpuSeconds = (cpuSeconds(nats.pid) ?? 0) - natsCpu0;
          // find's CPU over ours (workers, the command, nats-server): the ratio load bends least.
          const cpuRatio = f.cpuSeconds / (workerCpuSeconds + r.commandCpuSeconds + natsCpuSeconds);
          if (r.eligible !== f.matched)
            throw new Error(`policy run found ${r.eligible} eligible files, find ${f.matched}`);
          const ratio = r.entriesPerSecond / (r.entries / f.seconds);
          log(
            `    find ${f.seconds.toFixed(2)} s, ${f.cpuSeconds.toFixed(2)} CPU s (${int(f.matched)} matched); ratio ${ratio.toFixed(2)}; CPU s: workers ${workerCpuSeconds.toFixed(2)} (${((workerCpuSeconds / r.entries) * 1e6).toFixed(1)} µs/entry), command ${r.commandCpuSeconds.toFixed(2)}, nats ${natsCpuSeconds.toFixed(2)}; CPU ratio find / ours ${cpuRatio.toFixed(2)}`,
          );
          runs.push({
            ...r,
            findSeconds: f.seconds,
            findCpuSeconds: f.cpuSeconds,
            ratioToFind: ratio,
            workerCpuSeconds,
            natsCpuSeconds,
            cpuRatioToFind: cpuRatio,
          });
        }
        for (const c of started) await stopChild(c, 30_000);
        const ratio = median(runs.map((r) => r.ratioToFind));
        const rate = median(runs.map((r) => r.entriesPerSecond));
        const findRate = median(runs.map((r) => r.entries / r.findSeconds));
        const cpuRatio = median(runs.map((r) => r.cpuRatioToFind));
        row[`workers${workers}`] = {
          runs,
          entriesPerSecond: rate,
          findEntriesPerSecond: findRate,
          ratioToFind: ratio,
          cpuRatioToFind: cpuRatio,
          coordinatorPeakRssBytes: Math.max(...runs.map((r) => r.coordinatorPeakRssBytes)),
          loadAverage: loads,
        };
        log(
          `    median ${int(rate)} entries/s, find ${int(findRate)} entries/s: ${ratio.toFixed(2)} × find (paired median; CPU seconds find / ours ${cpuRatio.toFixed(2)}; load ${loads.map((l) => l.toFixed(0)).join(", ")} → ${loadavg()[0]!.toFixed(0)})`,
        );
      }
      results.push(row);
    }
  } finally {
    await nats.stop();
    await tmp?.cleanup();
    killAllChildren();
  }
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    JSON.stringify({ at: new Date().toISOString(), results }, null, 2) + "\n",
  );
  log(`results in ${RESULTS_FILE}`);
};

main().catch((err: unknown) => {
  killAllChildren();
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
