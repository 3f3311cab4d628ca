/**
 * Control-plane benchmark (`npm run bench:control-plane`, issue 22): files/s through the whole
 * control plane — walk → transfer batches → results → job record — with no file-system or
 * storage I/O. Workers (separate processes, control-plane-peer.ts) walk a SyntheticNamespace and
 * export into the in-process null target; the coordinator (a process of its own) runs a normal
 * export job. For each worker count (1, 4, 16, 64 by default) on a single nats-server, and for one
 * count beside a 3-node cluster (R3 streams and KV), it prints files/s, the coordinator's and the
 * nats-server(s)' CPU seconds and peak RSS, the workers' total CPU, and the JetStream stream and
 * KV sizes (peak while running, sampled every second). Every run checks the job's counts exactly.
 *
 * Environment: HSMFLEET_CP_FILES (default 1,000,000), HSMFLEET_CP_WORKERS ("1,4,16,64"),
 * HSMFLEET_CP_CLUSTER_WORKERS (default 16; 0 skips the cluster run), HSMFLEET_CP_BATCH (transfer
 * batch entries, default 1000), HSMFLEET_CP_FILES_PER_DIR (default 1000), HSMFLEET_CP_PROFILE
 * (a directory: the coordinator runs with --cpu-prof there). Writes bench/results/control-plane.json.
 */
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChildProcess } from "node:child_process";
import { connectBus, jetstreamManager } from "@hsmfleet/bus";
import { JOBS_BUCKET, LEDGER_BUCKET, RESULTS_STREAM, WORK_STREAM } from "@hsmfleet/protocol";
import { startNatsCluster, startNatsServer } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import { LineTail, ProcSampler, closed, int, mib, spawnTracked, stopChild } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "control-plane.json");
const PEER = fileURLToPath(new URL("./control-plane-peer.js", import.meta.url));

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new Error(`${name} must be an integer ≥ 0, got ${raw}`);
  return n;
};

const FILES = envInt("HSMFLEET_CP_FILES", 1_000_000);
const WORKER_COUNTS = (process.env["HSMFLEET_CP_WORKERS"] || "1,4,16,64").split(",").map(Number);
const CLUSTER_WORKERS = envInt("HSMFLEET_CP_CLUSTER_WORKERS", 16);
const BATCH = envInt("HSMFLEET_CP_BATCH", 1000);
const FILES_PER_DIR = envInt("HSMFLEET_CP_FILES_PER_DIR", 1000);
const PROFILE_DIR = process.env["HSMFLEET_CP_PROFILE"] || undefined;
const TREE = { files: FILES, filesPerDirectory: FILES_PER_DIR, fanOut: 8, maxFileSize: 65_536 };
const RUN_TIMEOUT_MS = 30 * 60_000;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Sizes {
  workBytes: number;
  workMessages: number;
  resultsBytes: number;
  resultsMessages: number;
  jobsKvBytes: number;
  ledgerKvBytes: number;
}

interface Run {
  cluster: boolean;
  workers: number;
  files: number;
  directories: number;
  /** Coordinator process start to exit. */
  seconds: number;
  /** The job's own clock (created → finished): what files/s is computed over. */
  jobSeconds: number;
  filesPerSecond: number;
  coordinatorCpuSeconds: number;
  coordinatorPeakRssBytes: number;
  natsCpuSeconds: number;
  natsPeakRssBytes: number;
  workersCpuSeconds: number;
  workerPeakRssBytes: number;
  peak: Sizes;
  end: Sizes;
  /** The machine's 1-minute load average when the job ended (the machine may be shared). */
  loadAverage: number;
}

const streamSizes = async (urls: string[]): Promise<Sizes> => {
  const nc = await connectBus({ servers: urls, name: "cp-bench-sizes" });
  try {
    const jsm = await jetstreamManager(nc);
    const info = async (name: string) => {
      try {
        return (await jsm.streams.info(name)).state;
      } catch {
        return { bytes: 0, messages: 0 };
      }
    };
    const [work, results, jobs, ledger] = await Promise.all([
      info(WORK_STREAM),
      info(RESULTS_STREAM),
      info(`KV_${JOBS_BUCKET}`),
      info(`KV_${LEDGER_BUCKET}`),
    ]);
    return {
      workBytes: work.bytes,
      workMessages: work.messages,
      resultsBytes: results.bytes,
      resultsMessages: results.messages,
      jobsKvBytes: jobs.bytes,
      ledgerKvBytes: ledger.bytes,
    };
  } finally {
    await nc.close();
  }
};

const maxSizes = (a: Sizes, b: Sizes): Sizes => ({
  workBytes: Math.max(a.workBytes, b.workBytes),
  workMessages: Math.max(a.workMessages, b.workMessages),
  resultsBytes: Math.max(a.resultsBytes, b.resultsBytes),
  resultsMessages: Math.max(a.resultsMessages, b.resultsMessages),
  jobsKvBytes: Math.max(a.jobsKvBytes, b.jobsKvBytes),
  ledgerKvBytes: Math.max(a.ledgerKvBytes, b.ledgerKvBytes),
});

const peerEnv = (urls: string[], storage: string, replicas: number, root: string) => ({
  ...process.env,
  HSMFLEET_LOG_LEVEL: "warn",
  CP_NATS: urls.join(","),
  CP_STORAGE: storage,
  CP_REPLICAS: String(replicas),
  CP_TREE: JSON.stringify(TREE),
  CP_ROOT: root,
  CP_BATCH_ENTRIES: String(BATCH),
});

interface Peer {
  child: ChildProcess;
  pid: number;
  stdout: LineTail;
  stderr: LineTail;
  sampler: ProcSampler;
}

const startPeer = (role: string, env: NodeJS.ProcessEnv, execArgv: string[] = []): Peer => {
  const child = spawnTracked(process.execPath, [...execArgv, PEER, role], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
  });
  if (child.pid === undefined) throw new Error(`could not spawn the ${role}`);
  return {
    child,
    pid: child.pid,
    stdout: new LineTail(child.stdout),
    stderr: new LineTail(child.stderr),
    sampler: new ProcSampler(child.pid, 250),
  };
};

const runOnce = async (workers: number, cluster: boolean): Promise<Run> => {
  const replicas = cluster ? 3 : 1;
  const fixture = cluster
    ? await startNatsCluster({ size: 3 })
    : await (async () => {
        const s = await startNatsServer();
        return { urls: [s.url], nodes: [s], stop: () => s.stop() };
      })();
  const sink = await spawnBlobSink();
  const root = await mkdtemp(join(tmpdir(), "hsmfleet-cp-root-"));
  const env = peerEnv(fixture.urls, sink.connectionString, replicas, root);
  const peers: Peer[] = [];
  const natsSamplers = fixture.nodes.map((n) => new ProcSampler(n.pid, 250));
  try {
    // Workers first (they create the topology with the run's replicas), a few at a time.
    const profileDir = PROFILE_DIR && join(PROFILE_DIR, `${cluster ? "r3" : "r1"}-${workers}`);
    // With HSMFLEET_CP_PROFILE, the first worker is profiled too.
    for (let i = 0; i < workers; i++)
      peers.push(
        startPeer(
          "worker",
          env,
          profileDir && i === 0
            ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, "worker")}`]
            : [],
        ),
      );
    await Promise.all(
      peers.map(async (p) => {
        const ready = await Promise.race([
          p.stdout.next((l) => l === "ready").then(() => true),
          closed(p.child).then(() => false),
        ]);
        if (!ready) throw new Error(`worker ${p.pid} exited at start:\n${p.stderr.text()}`);
      }),
    );
    const execArgv = profileDir
      ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, "coordinator")}`]
      : [];
    const natsCpu0 = natsSamplers.map((s) => (s.sample(), s.stop().cpuSeconds));
    const natsRun = fixture.nodes.map((n) => new ProcSampler(n.pid, 250));
    const workerCpu0 = peers.map((p) => (p.sampler.sample(), p.sampler.stop().cpuSeconds));
    const workerRun = peers.map((p) => new ProcSampler(p.pid, 1000));
    const t0 = performance.now();
    const coordinator = startPeer("coordinator", env, execArgv);
    let peak = await streamSizes(fixture.urls);
    let done = false;
    const exited = closed(coordinator.child).finally(() => (done = true));
    const sampling = (async () => {
      while (!done) {
        await sleep(1000);
        if (!done) peak = maxSizes(peak, await streamSizes(fixture.urls).catch(() => peak));
      }
    })();
    const timer = setTimeout(() => coordinator.child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    const exit = await exited;
    clearTimeout(timer);
    const seconds = (performance.now() - t0) / 1000;
    await sampling;
    const coord = coordinator.sampler.stop();
    const nats = natsRun.map((s) => s.stop());
    const work = workerRun.map((s) => s.stop());
    if (exit.code !== 0)
      throw new Error(
        `coordinator exited ${exit.code ?? exit.signal}:\n${coordinator.stderr.text()}`,
      );
    const summary = JSON.parse(coordinator.stdout.lines.find((l) => l.startsWith("{")) ?? "{}") as {
      state?: string;
      filesExported?: number;
      directoriesExported?: number;
      errors?: number;
      elapsedSeconds?: number;
    };
    const wantDirs = Math.ceil(FILES / FILES_PER_DIR) - 1; // the root is not exported as a stub
    if (
      summary.state !== "succeeded" ||
      summary.filesExported !== FILES ||
      summary.directoriesExported !== wantDirs ||
      summary.errors !== 0
    ) {
      throw new Error(
        `wrong job outcome (want ${FILES} files, ${wantDirs} directories): ${JSON.stringify(summary)}`,
      );
    }
    const end = await streamSizes(fixture.urls);
    return {
      cluster,
      workers,
      files: FILES,
      directories: wantDirs,
      seconds,
      jobSeconds: summary.elapsedSeconds ?? seconds,
      filesPerSecond: FILES / (summary.elapsedSeconds || seconds),
      coordinatorCpuSeconds: coord.cpuSeconds,
      coordinatorPeakRssBytes: coord.peakRssBytes,
      natsCpuSeconds: nats.reduce((s, n, i) => s + n.cpuSeconds - (natsCpu0[i] ?? 0), 0),
      natsPeakRssBytes: Math.max(...nats.map((n) => n.peakRssBytes)),
      workersCpuSeconds: work.reduce((s, w, i) => s + w.cpuSeconds - (workerCpu0[i] ?? 0), 0),
      workerPeakRssBytes: Math.max(...work.map((w) => w.peakRssBytes)),
      peak,
      end,
      loadAverage: loadavg()[0] ?? 0,
    };
  } finally {
    await Promise.all(peers.map((p) => stopChild(p.child, 15_000)));
    for (const s of natsSamplers) s.stop();
    await sink.stop();
    await fixture.stop();
    await rm(root, { recursive: true, force: true });
  }
};

const row = (r: Run): string =>
  [
    r.cluster ? "3-node R3" : "1 node",
    String(r.workers),
    int(r.filesPerSecond),
    `${r.jobSeconds.toFixed(1)} (${r.seconds.toFixed(1)})`,
    `${r.coordinatorCpuSeconds.toFixed(1)} s / ${mib(r.coordinatorPeakRssBytes)}`,
    `${r.natsCpuSeconds.toFixed(1)} s / ${mib(r.natsPeakRssBytes)}`,
    `${r.workersCpuSeconds.toFixed(1)} s / ${mib(r.workerPeakRssBytes)}`,
    `${mib(r.peak.workBytes)} (${int(r.peak.workMessages)})`,
    `${kib(r.peak.resultsBytes)} (${int(r.peak.resultsMessages)})`,
    `${kib(r.peak.jobsKvBytes)} / ${kib(r.peak.ledgerKvBytes)}`,
    r.loadAverage.toFixed(0),
  ].join(" | ");

const kib = (bytes: number): string =>
  bytes < 10_240 ? `${int(bytes)} B` : `${int(bytes / 1024)} KiB`;

const HEADER =
  "nats | workers | files/s | job s (process s) | coordinator CPU / peak RSS | nats CPU / peak RSS (max node) | workers CPU / peak RSS (max) | WORK peak (msgs) | RESULTS peak (msgs) | jobs KV / ledger KV peak | load avg";

const main = async (): Promise<void> => {
  log(
    `control plane: ${int(FILES)} synthetic files (${int(Math.ceil(FILES / FILES_PER_DIR))} directories, ${FILES_PER_DIR} a directory, fan-out 8), batches of ${BATCH}, null target`,
  );
  if (PROFILE_DIR) await mkdir(PROFILE_DIR, { recursive: true });
  const runs: Run[] = [];
  const plan: Array<[number, boolean]> = WORKER_COUNTS.map((w) => [w, false]);
  if (CLUSTER_WORKERS > 0) plan.push([CLUSTER_WORKERS, true]);
  for (const [workers, cluster] of plan) {
    log(`- ${workers} worker process(es), ${cluster ? "3-node cluster" : "one nats-server"} …`);
    const r = await runOnce(workers, cluster);
    log(`  ${row(r)}`);
    runs.push(r);
  }
  const table = [HEADER, HEADER.replace(/[^|]+/g, " --- "), ...runs.map(row)]
    .map((l) => `| ${l} |`)
    .join("\n");
  process.stdout.write(`${table}\n`);
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    `${JSON.stringify({ files: FILES, batch: BATCH, filesPerDirectory: FILES_PER_DIR, runs }, null, 2)}\n`,
  );
};

await main();
