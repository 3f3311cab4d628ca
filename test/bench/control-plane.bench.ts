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
 * Environment: HSMFLEET_CP_SIZES (files per job, comma-separated: the sweep runs every worker
 * count at every size, e.g. "1000000,10000000"; default HSMFLEET_CP_FILES, default 1,000,000),
 * HSMFLEET_CP_WORKERS ("1,4,16,64"), HSMFLEET_CP_CLUSTER_WORKERS (default 16; 0 skips the cluster
 * run), HSMFLEET_CP_BATCH (transfer batch entries, default 1000), HSMFLEET_CP_FILES_PER_DIR
 * (default 1000), HSMFLEET_CP_RUN_TIMEOUT_S (default 1800: a run still going then is stopped and
 * reported as partial, with the files its job had done and the rate so far, so a whole sweep runs
 * in bounded time), HSMFLEET_CP_PROFILE (a directory: the coordinator and the first worker run with
 * --cpu-prof there), HSMFLEET_CP_COORDINATOR_NODE_ARGS (node options of the coordinator only),
 * HSMFLEET_CP_COORDINATOR_STDOUT (a file that gets the coordinator's stdout too, e.g. --trace-gc),
 * HSMFLEET_CP_WORKER_BUNDLE=1 (worker processes run the peer bundled into one file: ~4× less CPU
 * and ~30 MiB less RSS each to start).
 * Writes bench/results/control-plane.json after every run.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnBlobSink } from "./blob-sink.js";
import {
  BusSampler,
  bundlePeer,
  envInt,
  envList,
  peerEnv,
  peerReady,
  startNats,
  startPeer,
} from "./cp-fixture.js";
import type { Peer, Sizes } from "./cp-fixture.js";
import { ProcSampler, closed, int, mib, stopChild } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "control-plane.json");

const SIZES = envList("HSMFLEET_CP_SIZES", [envInt("HSMFLEET_CP_FILES", 1_000_000)]);
const WORKER_COUNTS = envList("HSMFLEET_CP_WORKERS", [1, 4, 16, 64]);
const CLUSTER_WORKERS = envInt("HSMFLEET_CP_CLUSTER_WORKERS", 16);
const BATCH = envInt("HSMFLEET_CP_BATCH", 1000);
const FILES_PER_DIR = envInt("HSMFLEET_CP_FILES_PER_DIR", 1000);
const PROFILE_DIR = process.env["HSMFLEET_CP_PROFILE"] || undefined;
const RUN_TIMEOUT_MS = envInt("HSMFLEET_CP_RUN_TIMEOUT_S", 1800) * 1000;
/** HSMFLEET_CP_WORKER_BUNDLE=1: worker processes run the peer bundled into one file (bundlePeer). */
const WORKER_BUNDLE = process.env["HSMFLEET_CP_WORKER_BUNDLE"] === "1";
const treeOf = (files: number) => ({
  files,
  filesPerDirectory: FILES_PER_DIR,
  fanOut: 8,
  maxFileSize: 65_536,
});

/** Node options of the coordinator process only (e.g. "--max-old-space-size=96"). */
const COORDINATOR_NODE_ARGS = (process.env["HSMFLEET_CP_COORDINATOR_NODE_ARGS"] ?? "")
  .split(" ")
  .filter((a) => a !== "");
/** Worker processes started at once. */
const START_GROUP = 8;

const log = (line: string): void => void process.stderr.write(`${line}\n`);

interface Run {
  cluster: boolean;
  workers: number;
  files: number;
  directories: number;
  /** False: stopped at HSMFLEET_CP_RUN_TIMEOUT_S; `filesDone` of `files` were done by then. */
  complete: boolean;
  filesDone: number;
  /** Set when the job ended but did not succeed (e.g. items out of deliveries on a starved machine). */
  failure?: string | undefined;
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
  /** The workers' "item delivered again" log lines (each a delivery after the first). */
  redeliveries: number;
  /** Those lines by the worker's reason (its start), and the highest attempt seen. */
  redeliveryReasons: Record<string, number>;
  maxAttempt: number;
  /** Other warnings and errors the workers logged (at most 5, e.g. a publish timeout). */
  workerWarnings: string[];
}

const runOnce = async (files: number, workers: number, cluster: boolean): Promise<Run> => {
  const replicas = cluster ? 3 : 1;
  const fixture = await startNats(cluster);
  const sink = await spawnBlobSink();
  const root = await mkdtemp(join(tmpdir(), "hsmfleet-cp-root-"));
  const jobId = `cp-${files}-${workers}-${cluster ? "r3" : "r1"}-${Date.now().toString(36)}`;
  const env = peerEnv({
    urls: fixture.urls,
    storage: sink.connectionString,
    replicas,
    root,
    tree: treeOf(files),
    batch: BATCH,
    extra: { CP_JOB_ID: jobId },
  });
  const peers: Peer[] = [];
  const natsSamplers = fixture.nodes.map((n) => new ProcSampler(n.pid, 250));
  let sampler: BusSampler | undefined;
  try {
    // Workers first (they create the topology with the run's replicas), a few at a time.
    const profileDir =
      PROFILE_DIR && join(PROFILE_DIR, `${files}-${cluster ? "r3" : "r1"}-${workers}`);
    // With HSMFLEET_CP_PROFILE, the first worker is profiled too.
    // In groups of 8, each once the previous one pulls: 64 node processes starting at once on 2
    // CPUs took longer than the 5 s NATS connect timeout (as bench:fleet-churn does).
    for (let i = 0; i < workers; i += START_GROUP) {
      const group: Peer[] = [];
      for (let k = i; k < Math.min(workers, i + START_GROUP); k++)
        group.push(
          startPeer(
            "worker",
            env,
            profileDir && k === 0
              ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, "worker")}`]
              : [],
            1000,
          ),
        );
      peers.push(...group);
      await Promise.all(group.map((p) => peerReady(p, closed(p.child))));
    }
    const execArgv = [
      ...(profileDir ? ["--cpu-prof", `--cpu-prof-dir=${join(profileDir, "coordinator")}`] : []),
      ...COORDINATOR_NODE_ARGS,
    ];
    const natsCpu0 = natsSamplers.map((s) => (s.sample(), s.stop().cpuSeconds));
    const natsRun = fixture.nodes.map((n) => new ProcSampler(n.pid, 250));
    const workerCpu0 = peers.map((p) => (p.sampler.sample(), p.sampler.stop().cpuSeconds));
    const workerRun = peers.map((p) => new ProcSampler(p.pid, 1000));
    sampler = await BusSampler.start(fixture.urls, jobId);
    const t0 = performance.now();
    const coordinator = startPeer("coordinator", env, execArgv);
    // HSMFLEET_CP_COORDINATOR_STDOUT=FILE: the coordinator's stdout as well (e.g. --trace-gc lines).
    const coordinatorStdout = process.env["HSMFLEET_CP_COORDINATOR_STDOUT"];
    if (coordinatorStdout)
      coordinator.child.stdout?.pipe(createWriteStream(coordinatorStdout, { flags: "a" }));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      coordinator.child.kill("SIGKILL");
    }, RUN_TIMEOUT_MS);
    const exit = await closed(coordinator.child);
    clearTimeout(timer);
    const seconds = (performance.now() - t0) / 1000;
    const coord = coordinator.sampler.stop();
    const nats = natsRun.map((s) => s.stop());
    const work = workerRun.map((s) => s.stop());
    const wantDirs = Math.ceil(files / FILES_PER_DIR) - 1; // the root is not exported as a stub
    let complete = true;
    let filesDone = files;
    let jobSeconds = seconds;
    let failure: string | undefined;
    if (timedOut) {
      complete = false;
      filesDone = sampler.filesDone;
      log(
        `  stopped after ${RUN_TIMEOUT_MS / 1000} s: ${int(filesDone)} of ${int(files)} files done`,
      );
    } else {
      if (exit.code !== 0)
        throw new Error(
          `coordinator exited ${exit.code ?? exit.signal}:\n${coordinator.stderr.text()}`,
        );
      const summary = JSON.parse(
        coordinator.stdout.lines.find((l) => l.startsWith("{")) ?? "{}",
      ) as {
        state?: string;
        filesExported?: number;
        directoriesExported?: number;
        errors?: number;
        elapsedSeconds?: number;
        reason?: string;
        errorSamples?: Array<{ path: string; code: string; message: string }>;
      };
      if (summary.state === "failed") {
        // Recorded, not thrown: the sweep goes on and the table says what happened.
        complete = false;
        filesDone = summary.filesExported ?? 0;
        failure = `${summary.reason}; e.g. ${summary.errorSamples?.[0]?.code}: ${summary.errorSamples?.[0]?.message}`;
        log(`  the job failed: ${failure}`);
      } else if (
        summary.state !== "succeeded" ||
        summary.filesExported !== files ||
        summary.directoriesExported !== wantDirs ||
        summary.errors !== 0
      ) {
        throw new Error(
          `wrong job outcome (want ${files} files, ${wantDirs} directories): ${JSON.stringify(summary)}`,
        );
      }
      jobSeconds = summary.elapsedSeconds || seconds;
    }
    const end = await sampler.sizes();
    const lines = peers.flatMap((p) => p.stderr.lines);
    const redeliveryReasons: Record<string, number> = {};
    let redeliveries = 0;
    let maxAttempt = 1;
    const workerWarnings: string[] = [];
    for (const l of lines) {
      if (!l.includes("item delivered again")) {
        // Workers log at warn and above only: every other line is a warning or an error.
        if (workerWarnings.length < 5 && l.trim() !== "") workerWarnings.push(l.slice(0, 400));
        continue;
      }
      redeliveries++;
      try {
        const j = JSON.parse(l) as { reason?: string; attempt?: number };
        const why = (j.reason ?? "?").split(/[:(]/)[0]!.trim();
        redeliveryReasons[why] = (redeliveryReasons[why] ?? 0) + 1;
        maxAttempt = Math.max(maxAttempt, j.attempt ?? 1);
      } catch {
        redeliveryReasons["(not JSON)"] = (redeliveryReasons["(not JSON)"] ?? 0) + 1;
      }
    }
    if (redeliveries > 0 || workerWarnings.length > 0)
      log(
        `  ${redeliveries} redeliveries (highest attempt ${maxAttempt}): ${JSON.stringify(redeliveryReasons)}${workerWarnings.length > 0 ? `; worker warnings: ${workerWarnings.join(" | ")}` : ""}`,
      );
    return {
      redeliveries,
      redeliveryReasons,
      maxAttempt,
      workerWarnings,
      cluster,
      workers,
      files,
      directories: wantDirs,
      complete,
      filesDone,
      failure,
      seconds,
      jobSeconds,
      filesPerSecond: filesDone / jobSeconds,
      coordinatorCpuSeconds: coord.cpuSeconds,
      coordinatorPeakRssBytes: coord.peakRssBytes,
      natsCpuSeconds: nats.reduce((s, n, i) => s + n.cpuSeconds - (natsCpu0[i] ?? 0), 0),
      natsPeakRssBytes: Math.max(...nats.map((n) => n.peakRssBytes)),
      workersCpuSeconds: work.reduce((s, w, i) => s + w.cpuSeconds - (workerCpu0[i] ?? 0), 0),
      workerPeakRssBytes: Math.max(...work.map((w) => w.peakRssBytes)),
      peak: sampler.peak,
      end,
      loadAverage: loadavg()[0] ?? 0,
    };
  } finally {
    await sampler?.stop();
    await Promise.all(peers.map((p) => stopChild(p.child, 15_000)));
    for (const s of natsSamplers) s.stop();
    await sink.stop();
    await fixture.stop();
    await rm(root, { recursive: true, force: true });
  }
};

const row = (r: Run): string =>
  [
    r.complete
      ? int(r.files)
      : `${int(r.filesDone)} of ${int(r.files)} (${r.failure === undefined ? "stopped" : "job failed"})`,
    r.cluster ? "3-node R3" : "1 node",
    String(r.workers),
    int(r.filesPerSecond),
    `${r.jobSeconds.toFixed(1)} (${r.seconds.toFixed(1)})`,
    `${r.coordinatorCpuSeconds.toFixed(1)} s / ${mib(r.coordinatorPeakRssBytes)}`,
    `${r.natsCpuSeconds.toFixed(1)} s / ${mib(r.natsPeakRssBytes)}`,
    `${r.workersCpuSeconds.toFixed(1)} s / ${mib(r.workerPeakRssBytes)}`,
    `${mib(r.peak.workBytes)} (${int(r.peak.workMessages)}; ${int(r.peak.workTransferMessages ?? 0)} batches)`,
    `${kib(r.peak.resultsBytes)} (${int(r.peak.resultsMessages)})`,
    `${kib(r.peak.jobsKvBytes)} / ${kib(r.peak.ledgerKvBytes)}`,
    r.loadAverage.toFixed(0),
  ].join(" | ");

const kib = (bytes: number): string =>
  bytes < 10_240 ? `${int(bytes)} B` : `${int(bytes / 1024)} KiB`;

const HEADER =
  "files | nats | workers | files/s | job s (process s) | coordinator CPU / peak RSS | nats CPU / peak RSS (max node) | workers CPU / peak RSS (max) | WORK peak (msgs; transfer batches) | RESULTS peak (msgs) | jobs KV / ledger KV peak | load avg";

const main = async (): Promise<void> => {
  log(
    `control plane: ${SIZES.map(int).join(", ")} synthetic files (${FILES_PER_DIR} a directory, fan-out 8), batches of ${BATCH}, null target; workers ${WORKER_COUNTS.join(", ")}${CLUSTER_WORKERS > 0 ? ` (+ ${CLUSTER_WORKERS} beside a 3-node cluster)` : ""}; a run stops after ${RUN_TIMEOUT_MS / 1000} s`,
  );
  if (PROFILE_DIR) await mkdir(PROFILE_DIR, { recursive: true });
  if (WORKER_BUNDLE) {
    bundlePeer();
    log("  worker processes run the peer bundled into one file (HSMFLEET_CP_WORKER_BUNDLE=1)");
  }
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  const runs: Run[] = [];
  const plan: Array<[number, number, boolean]> = [];
  for (const files of SIZES) {
    for (const w of WORKER_COUNTS) plan.push([files, w, false]);
    if (CLUSTER_WORKERS > 0) plan.push([files, CLUSTER_WORKERS, true]);
  }
  for (const [files, workers, cluster] of plan) {
    log(
      `- ${int(files)} files, ${workers} worker process(es), ${cluster ? "3-node cluster" : "one nats-server"} …`,
    );
    const r = await runOnce(files, workers, cluster);
    log(`  ${row(r)}`);
    runs.push(r);
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify({ sizes: SIZES, batch: BATCH, filesPerDirectory: FILES_PER_DIR, runs }, null, 2)}\n`,
    );
  }
  const table = [HEADER, HEADER.replace(/[^|]+/g, " --- "), ...runs.map(row)]
    .map((l) => `| ${l} |`)
    .join("\n");
  process.stdout.write(`${table}\n`);
  const failed = runs.filter((r) => r.failure !== undefined);
  for (const r of failed)
    process.stdout.write(
      `${int(r.files)} files, ${r.workers} workers: the job failed: ${r.failure}\n`,
    );
  if (failed.length > 0) process.exitCode = 1;
};

await main();
