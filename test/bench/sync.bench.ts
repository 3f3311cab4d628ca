/**
 * `npm run bench:sync`: `hsmfleet sync` on the posix source (inotify), the service in this
 * process, `hsmfleet worker` processes, a real nats-server and a blob store (a fresh one per run):
 *   - raw ceiling (per run, before it): what the store answers at all — the same small Put Blobs
 *     sent straight from this process at the workers' concurrency (32: 4 items × 8 files), no sync,
 *     no NATS; × 3 records per file it is the most changes/s any number of workers could apply
 *     against this store;
 *   - throughput: files written as fast as a writer process can (sync-writer.ts; each a CREAT,
 *     MODIFY and CLOSE_WRITE
 *     record, coalesced into one upload), changes (records) applied per second with 1 and 2
 *     workers, `--settle 0`. "Applied" is timed by the service's change stream
 *     (`hsmfleet.changes.<name>`, published once the checkpoint passes a record), to the
 *     millisecond; the CPU seconds of every process of the path are read from /proc over the run;
 *   - lag: changes offered at a fixed rate (default 1,000 records/s) for a while; the service's
 *     seconds behind (age of the oldest record not yet applied), sampled every second.
 * Aim (issue 18): ≥ 2,000 changes/s per worker, lag under 10 s at 1,000 changes/s.
 *
 * Environment:
 *   HSMFLEET_BENCH_SYNC_FILES    files written for the throughput runs (default 4,000)
 *   HSMFLEET_BENCH_SYNC_RATE     offered records/s for the lag run (default 1,000)
 *   HSMFLEET_BENCH_SYNC_SECONDS  length of the lag run (default 20)
 *   HSMFLEET_BENCH_SYNC_WORKERS  worker counts to run, comma-separated (default "1,2")
 *   HSMFLEET_BENCH_SYNC_STORE    `sink` (default: the benchmark sink, blob-sink.ts, answers Put
 *                                Blob at almost no cost, so the sync path is what is measured) or
 *                                `azurite` (a real emulator: its own ceiling, ~100–1,500 Put
 *                                Blobs/s here, falling as it holds more blobs, bounds the run).
 *                                Either way a fresh store per run.
 *   HSMFLEET_BENCH_SYNC_PROFILE  a directory: CPU profiles of the service (this process, the
 *                                throughput runs) and of the workers (--cpu-prof) are written there
 *   HSMFLEET_BENCH_SYNC_PEER     the directory of another build of @hsmfleet/coordinator (its
 *                                package.json there): its runSyncService runs side by side with
 *                                this one (the workers are this build's), alternating which goes
 *                                first; the report gives medians per side and their ratio
 *   HSMFLEET_BENCH_SYNC_ROUNDS   rounds of every measurement (default 1; 3 with a peer)
 */
import { mkdir } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { ChildProcess } from "node:child_process";

import { connectBus, ensureTopology } from "@hsmfleet/bus";
import { openContainer, parseStorageTarget } from "@hsmfleet/blob";
import { runSyncService as thisRunSyncService } from "@hsmfleet/coordinator";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { changesSubject } from "@hsmfleet/protocol";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";

import { spawnBlobSink } from "./blob-sink.js";
import { CpuProfiler, summarizeProfile } from "./cpu-profile.js";
import { closed, cpuSeconds, median, spawnTracked, stopChild } from "./proc.js";

const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));
const envInt = (name: string, fallback: number): number => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};
const FILES = envInt("HSMFLEET_BENCH_SYNC_FILES", 4_000);
const RATE = envInt("HSMFLEET_BENCH_SYNC_RATE", 1_000);
const SECONDS = envInt("HSMFLEET_BENCH_SYNC_SECONDS", 20);
const WORKERS = (process.env["HSMFLEET_BENCH_SYNC_WORKERS"] ?? "1,2")
  .split(",")
  .map((s) => Number(s.trim()));
if (WORKERS.some((n) => !Number.isInteger(n) || n < 1))
  throw new Error("HSMFLEET_BENCH_SYNC_WORKERS: worker counts, comma-separated");
const STORE = process.env["HSMFLEET_BENCH_SYNC_STORE"] ?? "sink";
if (STORE !== "azurite" && STORE !== "sink")
  throw new Error("HSMFLEET_BENCH_SYNC_STORE must be azurite or sink");
const PROFILE_DIR = process.env["HSMFLEET_BENCH_SYNC_PROFILE"];
const PEER = process.env["HSMFLEET_BENCH_SYNC_PEER"];
const ROUNDS = envInt("HSMFLEET_BENCH_SYNC_ROUNDS", PEER !== undefined ? 3 : 1);
const RECORDS_PER_FILE = 3;
/** The workers' default concurrency: 4 items (transferConcurrency) × 8 files (fileConcurrency). */
const RAW_CONCURRENCY = 32;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round1 = (n: number) => Math.round(n * 10) / 10;

type RunSync = typeof thisRunSyncService;

interface Run {
  side: string;
  round: number;
  workers: number;
  files: number;
  records: number;
  seconds: number;
  /** The raw ceiling (Put Blobs straight to this run's store × 3 records per file). */
  rawChangesPerSecond: number;
  changesPerSecond: number;
  changesPerSecondPerWorker: number;
  filesPerSecond: number;
  /** How long writing the files took (the offered load's own pace). */
  writeSeconds: number;
  /** CPU seconds over the run: this process (service + writer), each worker, nats-server, store. */
  cpu: Record<string, number>;
  /** The 1-minute load average at the end of the run. */
  load1: number;
}

/** Put Blobs of small bodies straight to the store at RAW_CONCURRENCY: puts/s. */
const rawCeiling = async (
  storage: NonNullable<ReturnType<typeof parseStorageTarget>>,
  n: number,
): Promise<number> => {
  const container = openContainer(storage, "bench-sync-raw");
  await container.ensureExists();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: RAW_CONCURRENCY }, async () => {
      for (let i = next++; i < n; i = next++)
        await container.putBlob(`d/f${i}`, Buffer.from(`file ${i}\n`), {
          metadata: { modtime: "2026-12-06T00:00:00Z", permissions: "0644" },
        });
    }),
  );
  return n / ((performance.now() - t0) / 1000);
};

interface Lag {
  side: string;
  round: number;
  workers: number;
  rate: number;
  seconds: number;
  maxBehind: number;
  medianBehind: number;
}

interface Setup {
  dir: string;
  natsUrl: string;
  natsPid: number;
  nc: Awaited<ReturnType<typeof connectBus>>;
  profiler: CpuProfiler | undefined;
}

interface Store {
  connectionString: string;
  pid: number;
  storage: NonNullable<ReturnType<typeof parseStorageTarget>>;
  stop: () => Promise<void>;
}

/**
 * A fresh store for one run: Azurite slows down as it holds more blobs (its in-memory database),
 * so runs sharing one would each measure a slower store than the one before.
 */
const startStore = async (): Promise<Store> => {
  if (STORE === "azurite") {
    const azurite = await startAzurite();
    return {
      connectionString: azurite.connectionString,
      pid: azurite.pid,
      storage: parseStorageTarget(azurite.connectionString)!,
      stop: () => azurite.stop(),
    };
  }
  const sink = await spawnBlobSink();
  return {
    connectionString: sink.connectionString,
    pid: sink.pid,
    storage: parseStorageTarget(sink.connectionString)!,
    stop: () => sink.stop(),
  };
};

let runId = 0;

const WRITER = fileURLToPath(new URL("./sync-writer.js", import.meta.url));

/** Runs the writer (sync-writer.ts) in its own process: files written and the seconds it took. */
const writer = async (args: string[]): Promise<{ files: number; seconds: number }> => {
  const child = spawnTracked(process.execPath, [WRITER, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exit = await closed(child);
  if (exit.code !== 0)
    throw new Error(`sync-writer ${args.join(" ")}: exit ${exit.code ?? exit.signal}`);
  return JSON.parse(out) as { files: number; seconds: number };
};

/** One throughput run (and, with `lagToo`, a lag run after it) of one side with `workers` workers. */
const runOnce = async (
  setup: Setup,
  side: string,
  runSyncService: RunSync,
  round: number,
  workers: number,
  lagToo: boolean,
): Promise<{ run: Run; lag: Lag | undefined }> => {
  const id = ++runId;
  const store = await startStore();
  // What the store answers at all, measured on this run's fresh store before the run.
  const raw = await rawCeiling(store.storage, FILES);
  const procs: ChildProcess[] = [];
  for (let i = 0; i < workers; i++)
    procs.push(
      spawnTracked(
        process.execPath,
        [
          ...(PROFILE_DIR !== undefined
            ? [
                "--cpu-prof",
                `--cpu-prof-dir=${PROFILE_DIR}`,
                `--cpu-prof-name=worker-${side}-${workers}w-r${round}-${i}.cpuprofile`,
              ]
            : []),
          CLI_BIN,
          "--nats",
          setup.natsUrl,
          "--storage",
          store.connectionString,
          "worker",
        ],
        {
          stdio: ["ignore", "ignore", "inherit"],
          env: { ...process.env, HSMFLEET_LOG_LEVEL: "error" },
        },
      ),
    );
  const root = join(setup.dir, `tree-${id}`);
  await mkdir(join(root, "d"), { recursive: true });
  const name = `bench${id}`;
  let last: SyncStatusRecord | undefined;
  const behind: number[] = [];
  const abort = new AbortController();
  // Applied records, as the service publishes them once the checkpoint has passed them.
  let applied = 0;
  let appliedAt = 0;
  const changes = setup.nc.subscribe(changesSubject(name), {
    callback: () => {
      applied++;
      appliedAt = performance.now();
    },
  });
  const service = runSyncService({
    nc: setup.nc,
    root,
    container: `bench-sync-${id}`,
    name,
    settleMs: 0,
    removeDelayMs: 3_600_000,
    storage: store.storage,
    signal: abort.signal,
    onStatus: (s) => {
      last = s;
      behind.push(s.secondsBehind);
    },
  });
  let lag: Lag | undefined;
  let run: Run;
  try {
    while (last?.state !== "running") await sleep(50);
    while (last.backlog !== 0) await sleep(50);
    const base = applied;
    const pids: Record<string, number> = {
      service: process.pid,
      nats: setup.natsPid,
      [STORE]: store.pid,
    };
    procs.forEach((p, i) => (pids[`worker${i + 1}`] = p.pid ?? -1));
    const cpu0 = Object.fromEntries(
      Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid) ?? 0]),
    );
    await setup.profiler?.start();
    // Throughput: as fast as the writes go (the writer is a process of its own).
    const t0 = performance.now();
    await writer(["burst", join(root, "d"), "f", String(FILES)]);
    const written = performance.now();
    while (applied < base + FILES * RECORDS_PER_FILE) await sleep(10);
    const seconds = (appliedAt - t0) / 1000;
    const cpu = Object.fromEntries(
      Object.entries(pids).map(([k, pid]) => [k, round1((cpuSeconds(pid) ?? 0) - cpu0[k]!)]),
    );
    if (setup.profiler !== undefined && PROFILE_DIR !== undefined) {
      const profile = await setup.profiler.stop(
        join(PROFILE_DIR, `service-${side}-${workers}w-r${round}.cpuprofile`),
      );
      const { top } = summarizeProfile(profile, 15);
      for (const l of top)
        console.log(`  service ${l.selfMs.toFixed(0).padStart(6)} ms  ${l.name}  ${l.where}`);
    }
    const records = applied - base;
    run = {
      side,
      round,
      workers,
      files: FILES,
      records,
      seconds: Math.round(seconds * 100) / 100,
      writeSeconds: Math.round((written - t0) / 10) / 100,
      rawChangesPerSecond: Math.round(raw * RECORDS_PER_FILE),
      changesPerSecond: Math.round(records / seconds),
      changesPerSecondPerWorker: Math.round(records / seconds / workers),
      filesPerSecond: Math.round(FILES / seconds),
      cpu,
      load1: round1(loadavg()[0]!),
    };
    console.log(JSON.stringify(run));
    if (lagToo) {
      // Lag at a fixed offered rate.
      behind.length = 0;
      const filesPerTick = Math.max(1, Math.round(RATE / RECORDS_PER_FILE / 10));
      const offered = await writer([
        "rate",
        join(root, "d"),
        "lag",
        String(filesPerTick),
        String(SECONDS),
      ]);
      const samples = [...behind].sort((a, b) => a - b);
      lag = {
        side,
        round,
        workers,
        rate: Math.round((offered.files * RECORDS_PER_FILE) / offered.seconds),
        seconds: SECONDS,
        maxBehind: round1(samples[samples.length - 1] ?? 0),
        medianBehind: round1(samples[Math.floor(samples.length / 2)] ?? 0),
      };
      console.log(JSON.stringify({ lag }));
    }
  } finally {
    abort.abort();
    await service.catch(() => undefined);
    changes.unsubscribe();
    for (const p of procs) await stopChild(p);
    await store.stop();
  }
  return { run, lag };
};

const main = async (): Promise<void> => {
  const sides: Array<[string, RunSync]> = [["this", thisRunSyncService]];
  if (PEER !== undefined) {
    const peer = (await import(pathToFileURL(join(PEER, "dist/src/index.js")).href)) as {
      runSyncService: RunSync;
    };
    sides.push(["peer", peer.runSyncService]);
  }
  const dir = await tempDir();
  const nats = await startNatsServer();
  const nc = await connectBus({ servers: nats.url });
  await ensureTopology(nc);
  const runs: Run[] = [];
  const lags: Lag[] = [];
  if (PROFILE_DIR !== undefined) await mkdir(PROFILE_DIR, { recursive: true });
  const setup: Setup = {
    dir: dir.path,
    natsUrl: nats.url,
    natsPid: nats.pid,
    nc,
    profiler: PROFILE_DIR !== undefined ? new CpuProfiler() : undefined,
  };
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternating which side goes first, round by round.
      const order = round % 2 === 1 ? sides : [...sides].reverse();
      for (const workers of WORKERS)
        for (const [side, run] of order) {
          const out = await runOnce(setup, side, run, round, workers, workers === WORKERS[0]);
          runs.push(out.run);
          if (out.lag) lags.push(out.lag);
        }
    }
  } finally {
    setup.profiler?.close();
    await nc.close();
    await nats.stop();
    await dir.cleanup();
  }
  const summary = sides.map(([side]) => ({
    side,
    byWorkers: WORKERS.map((workers) => {
      const mine = runs.filter((r) => r.side === side && r.workers === workers);
      return {
        workers,
        changesPerSecond: median(mine.map((r) => r.changesPerSecond)),
        changesPerSecondPerWorker: median(mine.map((r) => r.changesPerSecondPerWorker)),
        workerCpuMsPerFile: round1(
          median(
            mine.map(
              (r) =>
                (Object.entries(r.cpu)
                  .filter(([k]) => k.startsWith("worker"))
                  .reduce((a, [, v]) => a + v, 0) *
                  1000) /
                r.files,
            ),
          ),
        ),
        serviceCpuMsPerFile: round1(median(mine.map((r) => (r.cpu["service"]! * 1000) / r.files))),
      };
    }),
    lag: {
      medianBehind: median(lags.filter((l) => l.side === side).map((l) => l.medianBehind)),
      maxBehind: Math.max(...lags.filter((l) => l.side === side).map((l) => l.maxBehind)),
    },
  }));
  const ratio =
    sides.length > 1
      ? WORKERS.map((workers) => ({
          workers,
          thisOverPeer:
            Math.round(
              (summary[0]!.byWorkers.find((b) => b.workers === workers)!.changesPerSecond /
                summary[1]!.byWorkers.find((b) => b.workers === workers)!.changesPerSecond) *
                100,
            ) / 100,
        }))
      : undefined;
  console.log(
    JSON.stringify({
      cpus: cpus().length,
      load: loadavg().map(round1),
      store: STORE,
      rawChangesPerSecond: median(runs.map((r) => r.rawChangesPerSecond)),
      summary,
      ratio,
      runs,
      lags,
    }),
  );
};

await main();
