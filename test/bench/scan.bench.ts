/**
 * `npm run bench:scan`: entries per second of `hsmfleet scan` (real CLI processes, real
 * nats-server) against GNU find on the same warm tree, plus the coordinator's peak RSS on a tree
 * twice as big (it must not grow with the number of files). Issue 17's wall-time aim is measured
 * on the command a user runs: `hsmfleet --nats URL scan ROOT` with its default in-process workers
 * (and, beside it, the embedded default, which starts and stops its own nats-server).
 *
 * Environment:
 *   HSMFLEET_BENCH_DIR       keep the generated trees here and reuse them on the next run
 *                            (default: a temp dir, removed at the end)
 *   HSMFLEET_BENCH_RUNS      repetitions per configuration (default 3)
 *   HSMFLEET_BENCH_CPU_PROF  a directory: CPU profiles of workers and coordinators go to DIR/<role>/
 */
import { execFileSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";
import type { ScanSummary } from "@hsmfleet/coordinator";
import { HsmFlag } from "@hsmfleet/core";
import { generateTree, startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { NatsServerFixture, TempDir, TreeSpec } from "@hsmfleet/testkit";
import {
  LineTail,
  ProcSampler,
  best,
  closed,
  requireBundle,
  cpuSeconds,
  exitedChildrenCpuSeconds,
  int,
  killAllChildren,
  median,
  mib,
  spawnTracked,
  stopChild,
} from "./proc.js";
import { ensureRclone, timedRun } from "./peer.js";

/** test/dist/bench/scan.bench.js -> repository root. */
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** The command a user runs (the launcher: the one-file bundle with its code cache, issue 17). */
const CLI_BIN = join(REPO_ROOT, "packages", "cli", "bin", "hsmfleet.js");
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "scan.json");
/** The floor: the kernel work alone (readdir, lstat, HSM xattr), compiled with `cc` when there is one. */
const FLOOR_SOURCE = join(REPO_ROOT, "test", "bench", "scan-floor.c");

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const RUNS = envInt("HSMFLEET_BENCH_RUNS", 3);
const BENCH_DIR = process.env["HSMFLEET_BENCH_DIR"] || undefined;
const CPU_PROF_DIR = process.env["HSMFLEET_BENCH_CPU_PROF"] || undefined;
const WORKER_CONCURRENCY = 16;
const AIM_RATIO = 0.5;
/** Issue 17: the whole command's wall time at 200k entries, as a rate, ≥ 0.8 of find's. */
const AIM_WALL_RATIO = 0.8;
const HSM_XATTR = "trusted.hsm";
const FIND_FORMAT = "%s %T@ %m %U %G %p\\n"; // find expands the \n itself, as in the shell
const SCAN_TIMEOUT_MS = 15 * 60_000;

const HSM: NonNullable<TreeSpec["hsm"]> = {
  xattrName: HSM_XATTR,
  states: [
    { flags: HsmFlag.Exists | HsmFlag.Archived | HsmFlag.Released, archiveId: 1 },
    { flags: HsmFlag.Exists | HsmFlag.Archived, archiveId: 1 },
    null,
  ],
};

/** 1,111 directories, 111,100 files. */
const SMALL_SPEC: TreeSpec = {
  depth: 3,
  fanout: 10,
  filesPerDir: 100,
  sizes: [0, 100, 4096],
  hsm: HSM,
};
/** About twice the small tree in both directories (2,380) and files (223,720). */
const LARGE_SPEC: TreeSpec = {
  depth: 3,
  fanout: 13,
  filesPerDir: 94,
  sizes: [0, 100, 4096],
  hsm: HSM,
};

// ---------------------------------------------------------------------------------------------
// Trees

interface TreeCounts {
  files: number;
  directories: number;
  symlinks: number;
  other: number;
  bytes: number;
  hsmStates: Record<string, number>;
}

interface Tree {
  label: string;
  root: string;
  counts: TreeCounts;
  /** files + directories (root included) + symlinks + other: what find prints. */
  entries: number;
}

const entriesOf = (c: { files: number; directories: number; symlinks: number; other: number }) =>
  c.files + c.directories + c.symlinks + c.other;

/** Generates `spec` under base/name, or reuses it when base/name.json says it was built from `spec`. */
const prepareTree = async (base: string, name: string, spec: TreeSpec): Promise<Tree> => {
  const root = join(base, name);
  const recordFile = join(base, `${name}.json`);
  if (existsSync(root) && existsSync(recordFile)) {
    const record = JSON.parse(await readFile(recordFile, "utf8")) as {
      spec: TreeSpec;
      counts: TreeCounts;
    };
    if (JSON.stringify(record.spec) === JSON.stringify(spec)) {
      log(`reusing ${root}`);
      return { label: name, root, counts: record.counts, entries: entriesOf(record.counts) };
    }
  }
  rmSync(root, { recursive: true, force: true });
  rmSync(recordFile, { force: true });
  log(`generating ${root} …`);
  const t0 = performance.now();
  const m = await generateTree(root, spec);
  const counts: TreeCounts = {
    files: m.files,
    directories: m.directories,
    symlinks: m.symlinks,
    other: m.other,
    bytes: m.bytes,
    hsmStates: m.hsmStates,
  };
  await writeFile(recordFile, `${JSON.stringify({ spec, counts }, null, 2)}\n`);
  log(
    `  ${int(entriesOf(counts))} entries (${int(counts.directories)} dirs) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return { label: name, root, counts, entries: entriesOf(counts) };
};

// ---------------------------------------------------------------------------------------------
// find

/** One `find -printf` run; stdout to /dev/null, or counted when `countLines`. */
const runFind = async (
  root: string,
  countLines: boolean,
): Promise<{ seconds: number; lines: number }> => {
  const child = spawnTracked("find", [root, "-printf", FIND_FORMAT], {
    stdio: ["ignore", countLines ? "pipe" : "ignore", "pipe"],
  });
  const stderr = new LineTail(child.stderr);
  let lines = 0;
  child.stdout?.on("data", (chunk: Buffer) => {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
  });
  const t0 = performance.now();
  const exit = await closed(child);
  const seconds = (performance.now() - t0) / 1000;
  if (exit.code !== 0)
    throw new Error(`find exited with ${exit.code ?? exit.signal}: ${stderr.text()}`);
  return { seconds, lines };
};

/** One `find -printf` run as a user runs it (stdout to /dev/null): wall and CPU seconds. */
const timedFind = async (root: string): Promise<{ seconds: number; cpuSeconds: number }> => {
  const r = await timedRun(["find", root, "-printf", FIND_FORMAT]);
  if (r.code !== 0) throw new Error(`find exited with ${r.code}: ${r.stderrTail}`);
  return { seconds: r.seconds, cpuSeconds: r.cpuUser + r.cpuSystem };
};

// ---------------------------------------------------------------------------------------------
// hsmfleet

/** Node flags for a child: with HSMFLEET_BENCH_CPU_PROF, a CPU profile per process under DIR/<role>/. */
const nodeArgs = (role: string): string[] =>
  CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${join(CPU_PROF_DIR, role)}`] : [];

const childEnv = (): NodeJS.ProcessEnv => ({ ...process.env, HSMFLEET_LOG_LEVEL: "warn" });

interface StandaloneWorker {
  child: ChildProcess;
  pid: number;
  stderr: LineTail;
}

interface WorkerStopStats {
  itemsDone: number;
  entriesRead: number;
}

const startWorker = async (natsUrl: string): Promise<StandaloneWorker> => {
  const child = spawnTracked(
    process.execPath,
    [
      ...nodeArgs("worker"),
      CLI_BIN,
      "--nats",
      natsUrl,
      "worker",
      "--concurrency",
      String(WORKER_CONCURRENCY),
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: childEnv() },
  );
  const stderr = new LineTail(child.stderr);
  const ready = stderr.next((line) => line.includes('"msg":"worker started"'));
  const outcome = await Promise.race([
    ready.then(() => "ready" as const),
    closed(child).then(() => "exited" as const),
    sleep(30_000, undefined, { ref: false }).then(() => "timeout" as const),
  ]);
  if (outcome !== "ready" || child.pid === undefined) {
    await stopChild(child, 1000);
    throw new Error(`standalone worker did not start (${outcome}):\n${stderr.text()}`);
  }
  return { child, pid: child.pid, stderr };
};

/** SIGTERM (the worker finishes in-flight items and exits 0); returns its final stats line. */
const stopWorker = async (w: StandaloneWorker): Promise<WorkerStopStats | undefined> => {
  const exit = await stopChild(w.child, 40_000);
  if (exit.code !== 0)
    log(`  worker ${w.pid} exited with ${exit.code ?? exit.signal}:\n${w.stderr.text()}`);
  for (const line of w.stderr.lines) {
    if (!line.includes('"msg":"worker stopped"')) continue;
    try {
      const parsed = JSON.parse(line) as Partial<WorkerStopStats>;
      return { itemsDone: parsed.itemsDone ?? 0, entriesRead: parsed.entriesRead ?? 0 };
    } catch {
      // not JSON after all
    }
  }
  return undefined;
};

interface ScanRun {
  entriesPerSecond: number;
  /** The job's own clock (summary.elapsedSeconds). */
  jobSeconds: number;
  /** Spawn of the coordinator process to its exit. */
  wallSeconds: number;
  coordinatorPeakRssBytes: number;
  coordinatorCpuSeconds: number;
  /** CPU used by the standalone workers during the run (0 with in-process workers). */
  workersCpuSeconds: number;
  /** Of that, their main threads' (JS, NATS); the rest is the libuv threadpool's (the walk's system calls) and V8's. */
  workersMainCpuSeconds: number;
  natsCpuSeconds: number;
  /** 1-minute load average when the command exited. */
  loadAverage: number;
  /** find -printf on the same tree just before this scan, and this scan's rate relative to it. */
  pairedFindEntriesPerSecond?: number;
  ratioVsPairedFind?: number;
  /** That find's wall and CPU seconds; find wall / this command's wall; find CPU / all our CPU. */
  pairedFindWallSeconds?: number;
  pairedFindCpuSeconds?: number;
  wallRatioVsPairedFind?: number;
  cpuRatioVsPairedFind?: number;
}

/** CPU of everything a scan used: the command, the standalone workers and nats-server. */
const scanCpuSeconds = (r: ScanRun): number =>
  r.coordinatorCpuSeconds + r.workersCpuSeconds + r.natsCpuSeconds;

const sumCpu = (pids: number[]): number => pids.reduce((s, pid) => s + (cpuSeconds(pid) ?? 0), 0);
const sumMainCpu = (pids: number[]): number =>
  pids.reduce((s, pid) => s + (cpuSeconds(pid, pid) ?? 0), 0);

/** `withHsm` false: a scan run with `--hsm-xattr ''` (every file "new"). */
const sameCounts = (summary: ScanSummary, tree: Tree, withHsm: boolean): string | undefined => {
  const c = tree.counts;
  const wanted = {
    files: c.files,
    directories: c.directories,
    symlinks: c.symlinks,
    other: c.other,
    bytes: c.bytes,
    errors: 0,
    vanished: 0,
  };
  for (const [key, value] of Object.entries(wanted)) {
    const got = summary[key as keyof typeof wanted];
    if (got !== value) return `${key} ${got}, expected ${value}`;
  }
  const sorted = (r: Record<string, number>) =>
    JSON.stringify(Object.entries(r).sort(([a], [b]) => a.localeCompare(b)));
  const states = withHsm ? c.hsmStates : { new: c.files };
  if (sorted(summary.hsmStates) !== sorted(states))
    return `hsmStates ${JSON.stringify(summary.hsmStates)}, expected ${JSON.stringify(states)}`;
  return undefined;
};

/** A scan that said "succeeded" but whose counts differ from the tree's manifest. */
class WrongCounts extends Error {
  override name = "WrongCounts";
}

/** Scans that reported success with wrong counts, over the whole benchmark. */
const wrongScans: string[] = [];
/** Retries of wrong scans allowed over the whole benchmark before giving up. */
const MAX_WRONG_SCANS = 10;

/**
 * One `hsmfleet --workers N scan ROOT --json --quiet`, checked against the tree's manifest. A scan
 * whose counts are wrong is not measured: it is recorded in wrongScans and run again.
 */
const runValidScan = async (...args: Parameters<typeof runScan>): Promise<ScanRun> => {
  for (;;) {
    try {
      return await runScan(...args);
    } catch (err) {
      if (!(err instanceof WrongCounts) || wrongScans.length >= MAX_WRONG_SCANS) throw err;
      wrongScans.push(err.message);
      log(`  WRONG COUNTS, not measured, running it again: ${err.message}`);
    }
  }
};

/** One `hsmfleet --workers N scan ROOT --json --quiet`, checked against the tree's manifest. */
const runScan = async (
  /** undefined: the embedded default (no --nats: the command starts and stops its nats-server). */
  nats: NatsServerFixture | undefined,
  stateDir: string,
  tree: Tree,
  /** undefined: no --workers (the default a user gets: one per CPU). */
  inProcessWorkers: number | undefined,
  workerPids: number[],
  /** "" = no HSM states: the same per-file work as find (lstat only). */
  hsmXattr = HSM_XATTR,
): Promise<ScanRun> => {
  // The embedded server is the command's child: its CPU is in the command's (waited-for children).
  const natsCpu0 = nats ? (cpuSeconds(nats.pid) ?? 0) : 0;
  const workersCpu0 = sumCpu(workerPids);
  const workersMainCpu0 = sumMainCpu(workerPids);
  const commandCpu0 = exitedChildrenCpuSeconds();
  const t0 = performance.now();
  const child = spawnTracked(
    process.execPath,
    [
      ...nodeArgs("coordinator"),
      CLI_BIN,
      ...(nats ? ["--nats", nats.url] : []),
      "--state-dir",
      stateDir,
      ...(inProcessWorkers === undefined ? [] : ["--workers", String(inProcessWorkers)]),
      "scan",
      tree.root,
      "--hsm-xattr",
      hsmXattr,
      "--json",
      "--quiet",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: childEnv() },
  );
  if (child.pid === undefined) throw new Error("could not spawn the coordinator");
  const sampler = new ProcSampler(child.pid, 50);
  let stdout = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  const stderr = new LineTail(child.stderr);
  const timer = setTimeout(() => child.kill("SIGKILL"), SCAN_TIMEOUT_MS);
  let exit;
  try {
    exit = await closed(child);
  } finally {
    clearTimeout(timer);
  }
  const wallSeconds = (performance.now() - t0) / 1000;
  const sample = sampler.stop();
  // Exact (the sampler misses the command's last moments): nothing else exits meanwhile.
  const commandCpuSeconds = exitedChildrenCpuSeconds() - commandCpu0;
  const workersCpuSeconds = sumCpu(workerPids) - workersCpu0;
  const workersMainCpuSeconds = sumMainCpu(workerPids) - workersMainCpu0;
  const natsCpuSeconds = nats ? (cpuSeconds(nats.pid) ?? 0) - natsCpu0 : 0;
  if (exit.code !== 0) {
    throw new Error(
      `hsmfleet scan exited with ${exit.code ?? exit.signal}:\n${stderr.text()}\n${stdout}`,
    );
  }
  const last = stdout.trim().split("\n").pop() ?? "";
  const summary = JSON.parse(last) as ScanSummary;
  if (summary.state !== "succeeded")
    throw new Error(`scan ${summary.jobId} ended ${summary.state}: ${summary.reason}`);
  const mismatch = sameCounts(summary, tree, hsmXattr !== "");
  if (mismatch !== undefined)
    throw new WrongCounts(`scan ${summary.jobId} of ${tree.root}: ${mismatch}`);
  const entries = entriesOf(summary);
  return {
    entriesPerSecond: summary.elapsedSeconds > 0 ? entries / summary.elapsedSeconds : Number.NaN,
    jobSeconds: summary.elapsedSeconds,
    wallSeconds,
    coordinatorPeakRssBytes: sample.peakRssBytes,
    coordinatorCpuSeconds: commandCpuSeconds,
    workersCpuSeconds,
    workersMainCpuSeconds,
    natsCpuSeconds,
    loadAverage: loadavg()[0] ?? Number.NaN,
  };
};

// ---------------------------------------------------------------------------------------------
// Configurations

interface ConfigResult {
  name: string;
  tree: string;
  entries: number;
  runs: Array<Partial<ScanRun> & { entriesPerSecond: number; wallSeconds: number }>;
  bestEntriesPerSecond: number;
  medianEntriesPerSecond: number;
  /** Median over runs of (scan rate / rate of the find run just before it); 1 for find itself. */
  ratioVsFind?: number;
  /** Medians over runs of (find wall / command wall) and (find CPU / all our CPU), paired. */
  wallRatioVsFind?: number;
  cpuRatioVsFind?: number;
  /** Standalone workers' own totals over all runs (from their "worker stopped" log line). */
  workerTotals?: Array<WorkerStopStats | null>;
}

const summarize = (
  name: string,
  tree: Tree,
  runs: ConfigResult["runs"],
  extra: Partial<ConfigResult> = {},
): ConfigResult => {
  const rates = runs.map((r) => r.entriesPerSecond);
  return {
    name,
    tree: tree.label,
    entries: tree.entries,
    runs,
    bestEntriesPerSecond: best(rates),
    medianEntriesPerSecond: median(rates),
    ...extra,
  };
};

const describeRun = (r: ScanRun): string =>
  `${int(r.entriesPerSecond)} entries/s (job ${r.jobSeconds.toFixed(2)} s, wall ${r.wallSeconds.toFixed(2)} s), ` +
  `coordinator ${mib(r.coordinatorPeakRssBytes)} peak, CPU s: coordinator ${r.coordinatorCpuSeconds.toFixed(2)}, ` +
  `workers ${r.workersCpuSeconds.toFixed(2)} (main thread ${r.workersMainCpuSeconds.toFixed(2)}), nats ${r.natsCpuSeconds.toFixed(2)}, load average ${r.loadAverage.toFixed(1)}`;

const measureFind = async (tree: Tree): Promise<ConfigResult> => {
  const runs: ConfigResult["runs"] = [];
  for (let i = 0; i < RUNS; i++) {
    const { seconds } = await runFind(tree.root, false);
    runs.push({ entriesPerSecond: tree.entries / seconds, wallSeconds: seconds });
    log(`  find run ${i + 1}: ${int(tree.entries / seconds)} entries/s (${seconds.toFixed(3)} s)`);
  }
  return summarize("find -printf", tree, runs);
};

/**
 * The peer: `rclone lsf -R --format stp` (size, mod time, path of every entry) of the same tree,
 * RUNS times, each paired with a find run just before it; undefined without rclone.
 */
const measureRcloneLsf = async (tree: Tree): Promise<ConfigResult | undefined> => {
  const found = ensureRclone(log);
  if ("missing" in found) {
    log(`  peer left out: ${found.missing}`);
    return undefined;
  }
  const runs: ConfigResult["runs"] = [];
  for (let i = 0; i < RUNS; i++) {
    const findRate = tree.entries / (await runFind(tree.root, false)).seconds;
    const r = await timedRun(
      [found.path, "lsf", "-R", "--format", "stp", "--checkers", "32", tree.root],
      { ...process.env, RCLONE_CONFIG: "/dev/null" },
    );
    if (r.code !== 0) throw new Error(`rclone lsf failed (${r.code}): ${r.stderrTail}`);
    const rate = tree.entries / r.seconds;
    runs.push({
      entriesPerSecond: rate,
      wallSeconds: r.seconds,
      pairedFindEntriesPerSecond: findRate,
      ratioVsPairedFind: rate / findRate,
    });
    log(
      `  rclone lsf run ${i + 1}: ${int(rate)} entries/s (${r.seconds.toFixed(3)} s, CPU ${(r.cpuUser + r.cpuSystem).toFixed(2)} s); find just before ${int(findRate)}/s`,
    );
  }
  return summarize(`rclone lsf -R (peer, ${found.version.split(" ")[1] ?? ""})`, tree, runs, {
    ratioVsFind: median(runs.map((r) => r.ratioVsPairedFind ?? Number.NaN)),
  });
};

// ---------------------------------------------------------------------------------------------
// The floor: the kernel work alone

/** Compiles test/bench/scan-floor.c into `dir`; its path, or why the floor is left out. */
const buildFloor = (dir: string): { path: string } | { missing: string } => {
  const path = join(dir, "scan-floor");
  try {
    execFileSync("cc", ["-O2", "-pthread", "-o", path, FLOOR_SOURCE], { stdio: "pipe" });
    return { path };
  } catch (err) {
    return { missing: `could not compile ${FLOOR_SOURCE} with cc: ${String(err).slice(0, 300)}` };
  }
};

interface FloorResult {
  name: string;
  tree: string;
  threads: number;
  hsmXattr: string;
  runs: Array<{
    wallSeconds: number;
    cpuSeconds: number;
    findWallSeconds: number;
    findCpuSeconds: number;
  }>;
  /** Medians over runs of find wall / floor wall and find CPU / floor CPU, paired. */
  wallRatioVsFind: number;
  cpuRatioVsFind: number;
}

/**
 * RUNS runs of the floor on `tree` with `threads` threads, each paired with a find run just
 * before it, after one run that checks it sees what the manifest says.
 */
const measureFloor = async (
  floor: string,
  tree: Tree,
  threads: number,
  hsmXattr: string,
): Promise<FloorResult> => {
  const name = `floor: kernel work only, ${threads} thread(s)${hsmXattr === "" ? ", no xattr" : ""}`;
  log(name);
  const [entries, files, xattrs] = execFileSync(floor, [tree.root, String(threads), hsmXattr], {
    encoding: "utf8",
  })
    .trim()
    .split(" ")
    .map(Number);
  const wantXattrs = hsmXattr === "" ? 0 : tree.counts.files - (tree.counts.hsmStates["new"] ?? 0);
  if (entries !== tree.entries || files !== tree.counts.files || xattrs !== wantXattrs)
    throw new Error(
      `the floor saw ${entries} entries, ${files} files, ${xattrs} xattrs; the manifest says ${tree.entries}, ${tree.counts.files}, ${wantXattrs}`,
    );
  const runs: FloorResult["runs"] = [];
  for (let i = 0; i < RUNS; i++) {
    const found = await timedFind(tree.root);
    const r = await timedRun([floor, tree.root, String(threads), hsmXattr]);
    if (r.code !== 0) throw new Error(`the floor exited with ${r.code}: ${r.stderrTail}`);
    const run = {
      wallSeconds: r.seconds,
      cpuSeconds: r.cpuUser + r.cpuSystem,
      findWallSeconds: found.seconds,
      findCpuSeconds: found.cpuSeconds,
    };
    runs.push(run);
    log(
      `  ${tree.label} run ${i + 1}: ${run.wallSeconds.toFixed(2)} s wall, ${run.cpuSeconds.toFixed(2)} CPU s; find just before ${found.seconds.toFixed(2)} s wall, ${found.cpuSeconds.toFixed(2)} CPU s (ratio: wall ${(found.seconds / run.wallSeconds).toFixed(2)}, CPU ${(found.cpuSeconds / run.cpuSeconds).toFixed(2)})`,
    );
  }
  return {
    name,
    tree: tree.label,
    threads,
    hsmXattr,
    runs,
    wallRatioVsFind: median(runs.map((r) => r.findWallSeconds / r.wallSeconds)),
    cpuRatioVsFind: median(runs.map((r) => r.findCpuSeconds / r.cpuSeconds)),
  };
};

/** The floor's lines of the report. */
const floorLines = (floors: FloorResult[], nCpus: number): string[] =>
  floors.length === 0
    ? []
    : [
        "",
        `the floor (test/bench/scan-floor.c: readdir + lstat + the HSM xattr of each file, ${nCpus} threads, no start-up or messages; what any scan reading HSM states could reach here):`,
        ...floors.map(
          (f) =>
            `  ${pad(`${f.name}, ${f.tree}`, 60)}wall: find / floor ${f.wallRatioVsFind.toFixed(2)}, CPU s: find / floor ${f.cpuRatioVsFind.toFixed(2)} (floor ${median(f.runs.map((r) => r.wallSeconds)).toFixed(2)} s wall, ${median(f.runs.map((r) => r.cpuSeconds)).toFixed(2)} CPU s)`,
        ),
      ];

/**
 * RUNS scans of each tree with `standalone` worker processes started beforehand (and stopped
 * after), the coordinator running `inProcess` workers of its own.
 */
const measureScan = async (
  name: string,
  /** undefined: the embedded default (no standalone workers then). */
  nats: NatsServerFixture | undefined,
  stateDir: string,
  trees: Tree[],
  standalone: number,
  /** undefined: the command's default (one per CPU). */
  inProcess: number | undefined,
  hsmXattr = HSM_XATTR,
): Promise<ConfigResult[]> => {
  log(`${name}`);
  const workers: StandaloneWorker[] = [];
  const results: ConfigResult[] = [];
  try {
    for (let i = 0; i < standalone; i++) workers.push(await startWorker(nats!.url));
    const pids = workers.map((w) => w.pid);
    if (standalone > 0 || nats === undefined) {
      // Fleet workers are long-lived: one unmeasured scan so the measured ones don't pay for a cold
      // JIT; the embedded default's first command creates its JetStream store (once per machine).
      const warm = await runValidScan(nats, stateDir, trees[0]!, inProcess, pids, hsmXattr);
      log(`  warm-up: ${describeRun(warm)}`);
    }
    for (const tree of trees) {
      const runs: ScanRun[] = [];
      for (let i = 0; i < RUNS; i++) {
        // Paired with a find run just before it, so a change in machine load between
        // configurations does not show up as a change in the ratio.
        const found = await timedFind(tree.root);
        const findRate = tree.entries / found.seconds;
        const run = await runValidScan(nats, stateDir, tree, inProcess, pids, hsmXattr);
        run.pairedFindEntriesPerSecond = findRate;
        run.ratioVsPairedFind = run.entriesPerSecond / findRate;
        run.pairedFindWallSeconds = found.seconds;
        run.pairedFindCpuSeconds = found.cpuSeconds;
        run.wallRatioVsPairedFind = found.seconds / run.wallSeconds;
        run.cpuRatioVsPairedFind = found.cpuSeconds / scanCpuSeconds(run);
        runs.push(run);
        log(
          `  ${tree.label} run ${i + 1}: ${describeRun(run)}; find just before ${int(findRate)}/s, ${found.seconds.toFixed(2)} s wall, ${found.cpuSeconds.toFixed(2)} CPU s (ratio: job clock ${run.ratioVsPairedFind.toFixed(2)}, wall ${run.wallRatioVsPairedFind.toFixed(2)}, CPU ${run.cpuRatioVsPairedFind.toFixed(2)})`,
        );
      }
      results.push(
        summarize(name, tree, runs, {
          ratioVsFind: median(runs.map((r) => r.ratioVsPairedFind ?? Number.NaN)),
          wallRatioVsFind: median(runs.map((r) => r.wallRatioVsPairedFind ?? Number.NaN)),
          cpuRatioVsFind: median(runs.map((r) => r.cpuRatioVsPairedFind ?? Number.NaN)),
        }),
      );
    }
  } finally {
    const totals = await Promise.all(workers.map((w) => stopWorker(w)));
    const last = results.at(-1);
    if (last && totals.length > 0) last.workerTotals = totals.map((t) => t ?? null);
    if (totals.length > 1)
      log(
        `  work split: ${totals.map((t) => (t ? `${int(t.itemsDone)} dirs / ${int(t.entriesRead)} entries` : "?")).join(" | ")}`,
      );
  }
  return results;
};

// ---------------------------------------------------------------------------------------------
// Main

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

const ownedDirs: string[] = [];
let natsServer: NatsServerFixture | undefined;

const onSignal = (signal: NodeJS.Signals): void => {
  process.stderr.write(`\n${signal}: stopping processes, removing ${ownedDirs.join(", ")} …\n`);
  killAllChildren();
  natsServer?.kill("SIGKILL"); // its store dir goes in testkit's exit hook
  for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  process.exit(130);
};

const pad = (s: string, n: number): string => s.padEnd(n);

const main = async (): Promise<void> => {
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  process.once("SIGHUP", onSignal);

  let treesDir: TempDir | undefined;
  let stateDir: TempDir | undefined;
  let nats: NatsServerFixture | undefined;
  try {
    let base: string;
    if (BENCH_DIR) {
      base = resolve(BENCH_DIR);
      await mkdir(base, { recursive: true });
    } else {
      treesDir = await tempDir("hsmfleet-bench-");
      ownedDirs.push(treesDir.path);
      base = treesDir.path;
    }
    stateDir = await tempDir("hsmfleet-bench-state-");
    ownedDirs.push(stateDir.path);
    if (CPU_PROF_DIR) await mkdir(CPU_PROF_DIR, { recursive: true });

    requireBundle(CLI_BIN);
    const small = await prepareTree(base, "tree-100k", SMALL_SPEC);
    const large = await prepareTree(base, "tree-200k", LARGE_SPEC);

    // Warm the page, dentry and inode caches, and check find sees what the manifest says.
    for (const tree of [small, large]) {
      const { lines, seconds } = await runFind(tree.root, true);
      log(`warm-up find ${tree.label}: ${int(lines)} lines in ${seconds.toFixed(2)} s`);
      if (lines !== tree.entries)
        throw new Error(`find printed ${lines} lines, manifest says ${tree.entries}`);
    }

    nats = await startNatsServer();
    natsServer = nats;
    log(`nats-server ${nats.url} (pid ${nats.pid})`);
    // One unmeasured scan per tree: creates the streams and warms the xattr reads.
    for (const tree of [small, large]) {
      const run = await runValidScan(nats, stateDir.path, tree, 1, []);
      log(`warm-up scan ${tree.label}: ${describeRun(run)}`);
    }

    const loadAtStart = loadavg()[0] ?? Number.NaN;
    log("find -printf");
    const find = await measureFind(small);
    log("rclone lsf -R (peer)");
    const peerLsf = await measureRcloneLsf(small);
    const floors: FloorResult[] = [];
    const floorBin = buildFloor(stateDir.path);
    if ("missing" in floorBin) log(`  floor left out: ${floorBin.missing}`);
    else
      for (const xattr of [HSM_XATTR, ""])
        floors.push(await measureFloor(floorBin.path, large, availableParallelism(), xattr));
    const [oneProc, oneProcLarge] = await measureScan(
      "hsmfleet scan, 1 worker (proc)",
      nats,
      stateDir.path,
      [small, large],
      1,
      0,
    );
    const [twoProc] = await measureScan(
      "hsmfleet scan, 2 workers (proc)",
      nats,
      stateDir.path,
      [small],
      2,
      0,
    );
    const [inProc] = await measureScan(
      "hsmfleet scan, 1 in-process",
      nats,
      stateDir.path,
      [small],
      0,
      1,
    );
    // find's own work (lstat only, no HSM xattr read): what the xattr costs, and the floor.
    const [noXattrLarge] = await measureScan(
      "hsmfleet scan, 1 worker (proc), --hsm-xattr ''",
      nats,
      stateDir.path,
      [large],
      1,
      0,
      "",
    );
    // What a user runs (issue 17's aim is measured on these): `hsmfleet --nats URL scan ROOT`
    // and `hsmfleet scan ROOT` (the embedded default), each with its default in-process workers.
    const [userNats] = await measureScan(
      "hsmfleet --nats URL scan (default: in-process workers)",
      nats,
      stateDir.path,
      [large],
      0,
      undefined,
    );
    const embeddedState = join(stateDir.path, "embedded");
    const [userEmbedded] = await measureScan(
      "hsmfleet scan (embedded default: its own nats-server, in-process workers)",
      undefined,
      embeddedState,
      [large],
      0,
      undefined,
    );
    if (!oneProc || !oneProcLarge || !twoProc || !inProc || !noXattrLarge)
      throw new Error("missing results");
    if (!userNats || !userEmbedded) throw new Error("missing results");
    // find again: how much did the machine change while hsmfleet ran?
    log("find -printf (again, to see drift)");
    const findAgain = await measureFind(small);
    const findDrift = findAgain.medianEntriesPerSecond / find.medianEntriesPerSecond - 1;
    const loadAtEnd = loadavg()[0] ?? Number.NaN;

    const configs = [find, ...(peerLsf ? [peerLsf] : []), oneProc, twoProc, inProc];
    find.ratioVsFind = 1;

    const peak = (c: ConfigResult) =>
      Math.max(...c.runs.map((r) => r.coordinatorPeakRssBytes ?? 0));
    const peakSmall = peak(oneProc);
    const peakLarge = peak(oneProcLarge);
    const memoryRatio = peakLarge / peakSmall;
    const aimRatio = oneProc.ratioVsFind ?? Number.NaN;
    const aimBestRatio = best(oneProc.runs.map((r) => r.ratioVsPairedFind ?? Number.NaN));
    const met = aimRatio >= AIM_RATIO;
    // Issue 17's wall aim is about the command a user runs: the --nats one with its default workers.
    const wallRatio = userNats.wallRatioVsFind ?? Number.NaN;
    const wallMet = wallRatio >= AIM_WALL_RATIO;
    const medianOf = (
      c: ConfigResult,
      key:
        | "wallSeconds"
        | "coordinatorCpuSeconds"
        | "workersCpuSeconds"
        | "workersMainCpuSeconds"
        | "natsCpuSeconds",
    ) => median(c.runs.map((r) => r[key] ?? Number.NaN));

    const nCpus = availableParallelism();
    const lines = [
      "",
      `scan benchmark — tree: ${int(small.entries)} entries (${int(small.counts.directories)} dirs), warm cache, ${nCpus} CPUs, load average ${loadAtStart.toFixed(1)} → ${loadAtEnd.toFixed(1)}`,
      `${pad("config", 32)}${pad("entries/s (best / median)", 28)}${pad("ratio vs find", 15)}wall s (median)`,
      ...configs.map(
        (c) =>
          `${pad(c.name, 32)}${pad(`${int(c.bestEntriesPerSecond)} / ${int(c.medianEntriesPerSecond)}`, 28)}${pad((c.ratioVsFind ?? Number.NaN).toFixed(2), 15)}${medianOf(c, "wallSeconds").toFixed(2)}`,
      ),
      `coordinator peak RSS: 100k tree ${mib(peakSmall)}, 200k tree ${mib(peakLarge)} (ratio ${memoryRatio.toFixed(2)})` +
        ` [200k tree: ${int(large.entries)} entries, ${int(large.counts.directories)} dirs; ${int(oneProcLarge.medianEntriesPerSecond)} entries/s median]`,
      `aim: ≥ ${AIM_RATIO.toFixed(2)} of find with one worker — ${met ? "MET" : "NOT MET"} (median ${aimRatio.toFixed(2)}, best ${aimBestRatio.toFixed(2)})`,
      `issue 17 aim: the whole command's wall time ≥ ${AIM_WALL_RATIO.toFixed(2)} of find's (as a rate) at ${int(large.entries)} entries, \`hsmfleet --nats URL scan\` as a user runs it — ${wallMet ? "MET" : "NOT MET"} (find wall / scan wall, paired median ${wallRatio.toFixed(2)}; scan wall ${medianOf(userNats, "wallSeconds").toFixed(2)} s, find ${median(userNats.runs.map((r) => r.pairedFindWallSeconds ?? Number.NaN)).toFixed(2)} s; CPU seconds find / ours ${(userNats.cpuRatioVsFind ?? Number.NaN).toFixed(2)}); embedded default ${(userEmbedded.wallRatioVsFind ?? Number.NaN).toFixed(2)} (${medianOf(userEmbedded, "wallSeconds").toFixed(2)} s); 1 worker process ${(oneProcLarge.wallRatioVsFind ?? Number.NaN).toFixed(2)}`,
      "",
      "paired ratios vs find (medians): job clock / whole command's wall / CPU seconds (find's over the command's + workers' + nats-server's):",
      ...[userNats, userEmbedded, oneProc, oneProcLarge, noXattrLarge, twoProc, inProc].map(
        (c) =>
          `  ${pad(`${c.name}, ${c.tree}`, 60)}${(c.ratioVsFind ?? Number.NaN).toFixed(2)} / ${(c.wallRatioVsFind ?? Number.NaN).toFixed(2)} / ${(c.cpuRatioVsFind ?? Number.NaN).toFixed(2)}`,
      ),
      "",
      "median CPU seconds per scan (the command (with the embedded default's nats-server, its child) / standalone workers (their main threads) / nats-server):",
      ...[userNats, userEmbedded, oneProc, oneProcLarge, noXattrLarge, twoProc, inProc].map(
        (c) =>
          `  ${pad(`${c.name}, ${c.tree}`, 60)}${medianOf(c, "coordinatorCpuSeconds").toFixed(2)} / ${medianOf(c, "workersCpuSeconds").toFixed(2)} (${medianOf(c, "workersMainCpuSeconds").toFixed(2)}) / ${medianOf(c, "natsCpuSeconds").toFixed(2)}`,
      ),
      ...floorLines(floors, nCpus),
      "entries/s of hsmfleet use the job's own clock (summary.elapsedSeconds); find's include process start.",
      "ratio vs find: median over runs of (scan rate / rate of a find run made just before that scan).",
      ...(peerLsf
        ? [
            `to rclone lsf (peer): hsmfleet 1 worker ${(oneProc.medianEntriesPerSecond / peerLsf.medianEntriesPerSecond).toFixed(2)}× (median rates; rclone's include its process start, hsmfleet's the job clock)`,
          ]
        : []),
      `find measured again at the end: ${int(findAgain.medianEntriesPerSecond)} entries/s median (${findDrift >= 0 ? "+" : ""}${(findDrift * 100).toFixed(0)}% drift)`,
    ];
    if (wrongScans.length > 0)
      lines.push(
        `WRONG RESULTS: ${wrongScans.length} scan(s) said "succeeded" with counts short of the tree (run again, not measured):`,
        ...wrongScans.map((w) => `  ${w}`),
      );
    if (Math.max(loadAtStart, loadAtEnd) > nCpus)
      lines.push(
        `warning: load average above the CPU count (${nCpus}): other processes competed for the CPUs; numbers are noisy`,
      );
    process.stdout.write(`${lines.join("\n")}\n`);

    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    const cpuInfo = cpus();
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          benchmark: "scan",
          date: new Date().toISOString(),
          node: process.version,
          cpus: nCpus,
          cpuModel: cpuInfo[0]?.model ?? "unknown",
          runsPerConfig: RUNS,
          loadAverage: { start: loadAtStart, end: loadAtEnd },
          workerConcurrency: WORKER_CONCURRENCY,
          trees: Object.fromEntries(
            [small, large].map((t) => [t.label, { entries: t.entries, ...t.counts }]),
          ),
          configs: [...configs, oneProcLarge, noXattrLarge, userNats, userEmbedded].map((c) => ({
            ...c,
            name: c.tree === small.label ? c.name : `${c.name}, ${c.tree}`,
          })),
          coordinatorMemory: {
            peakRssBytes100k: peakSmall,
            peakRssBytes200k: peakLarge,
            ratio: memoryRatio,
          },
          findAtEnd: findAgain,
          floors,
          wrongScans,
          aim: { ratio: AIM_RATIO, measured: aimRatio, measuredBest: aimBestRatio, met },
          wallAim: {
            ratio: AIM_WALL_RATIO,
            entries: large.entries,
            measured: wallRatio,
            met: wallMet,
          },
        },
        null,
        2,
      )}\n`,
    );
    log(`results written to ${RESULTS_FILE}`);
  } finally {
    killAllChildren();
    await nats?.stop();
    await stateDir?.cleanup();
    if (treesDir) {
      log("removing the trees …");
      await treesDir.cleanup();
    }
  }
};

try {
  await main();
} catch (err) {
  process.stderr.write(
    `scan benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
