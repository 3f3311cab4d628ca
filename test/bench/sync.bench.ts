/**
 * `npm run bench:sync`: `hsmfleet sync` on the posix source (inotify), the service in this
 * process, `hsmfleet worker` processes, a real nats-server and a blob store (Azurite by default):
 *   - raw ceiling: what the store answers at all — the same small Put Blobs sent straight from this
 *     process at the workers' concurrency (32: 4 items × 8 files), no sync, no NATS; × 3 records
 *     per file it is the most changes/s any number of workers could apply against this store;
 *   - throughput: files written as fast as this process can (each a CREAT, MODIFY and CLOSE_WRITE
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
 *   HSMFLEET_BENCH_SYNC_STORE    `azurite` (default) or `sink` (the benchmark sink, blob-sink.ts:
 *                                answers Put Blob at almost no cost — to see the rest of the path)
 *   HSMFLEET_BENCH_SYNC_PROFILE  a directory: CPU profiles of the service (this process, the
 *                                throughput runs) and of the workers (--cpu-prof) are written there
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";

import { connectBus, ensureTopology } from "@hsmfleet/bus";
import { openContainer, parseStorageTarget } from "@hsmfleet/blob";
import { runSyncService } from "@hsmfleet/coordinator";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { changesSubject } from "@hsmfleet/protocol";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";

import { spawnBlobSink } from "./blob-sink.js";
import { CpuProfiler, summarizeProfile } from "./cpu-profile.js";
import { cpuSeconds, spawnTracked, stopChild } from "./proc.js";

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
const STORE = process.env["HSMFLEET_BENCH_SYNC_STORE"] ?? "azurite";
if (STORE !== "azurite" && STORE !== "sink")
  throw new Error("HSMFLEET_BENCH_SYNC_STORE must be azurite or sink");
const PROFILE_DIR = process.env["HSMFLEET_BENCH_SYNC_PROFILE"];
const RECORDS_PER_FILE = 3;
/** The workers' default concurrency: 4 items (transferConcurrency) × 8 files (fileConcurrency). */
const RAW_CONCURRENCY = 32;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round1 = (n: number) => Math.round(n * 10) / 10;

interface Run {
  workers: number;
  files: number;
  records: number;
  seconds: number;
  changesPerSecond: number;
  changesPerSecondPerWorker: number;
  filesPerSecond: number;
  /** CPU seconds over the run: this process (service + writer), each worker, nats-server, store. */
  cpu: Record<string, number>;
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

const main = async (): Promise<void> => {
  const dir = await tempDir();
  const nats = await startNatsServer();
  const azurite = STORE === "azurite" ? await startAzurite() : undefined;
  const sink = STORE === "sink" ? await spawnBlobSink() : undefined;
  const connectionString = azurite?.connectionString ?? sink!.connectionString;
  const storePid = azurite?.pid ?? sink!.pid;
  const storage = parseStorageTarget(connectionString)!;
  const nc = await connectBus({ servers: nats.url });
  await ensureTopology(nc);
  const runs: Run[] = [];
  let lag: { rate: number; seconds: number; maxBehind: number; medianBehind: number } | undefined;
  const profiler = PROFILE_DIR !== undefined ? new CpuProfiler() : undefined;
  if (PROFILE_DIR !== undefined) await mkdir(PROFILE_DIR, { recursive: true });
  let raw = 0;
  try {
    raw = await rawCeiling(storage, FILES);
    console.log(
      JSON.stringify({
        store: STORE,
        rawPutsPerSecond: Math.round(raw),
        rawChangesPerSecond: Math.round(raw * RECORDS_PER_FILE),
      }),
    );
    for (const workers of WORKERS) {
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
                    `--cpu-prof-name=worker-${workers}w-${i}.cpuprofile`,
                  ]
                : []),
              CLI_BIN,
              "--nats",
              nats.url,
              "--storage",
              connectionString,
              "worker",
            ],
            {
              stdio: ["ignore", "ignore", "inherit"],
              env: { ...process.env, HSMFLEET_LOG_LEVEL: "error" },
            },
          ),
        );
      const root = join(dir.path, `tree-${workers}`);
      await mkdir(join(root, "d"), { recursive: true });
      const name = `bench${workers}`;
      let last: SyncStatusRecord | undefined;
      const behind: number[] = [];
      const abort = new AbortController();
      // Applied records, as the service publishes them once the checkpoint has passed them.
      let applied = 0;
      let appliedAt = 0;
      const changes = nc.subscribe(changesSubject(name), {
        callback: () => {
          applied++;
          appliedAt = performance.now();
        },
      });
      const service = runSyncService({
        nc,
        root,
        container: `bench-sync-${workers}`,
        name,
        settleMs: 0,
        removeDelayMs: 3_600_000,
        storage,
        signal: abort.signal,
        onStatus: (s) => {
          last = s;
          behind.push(s.secondsBehind);
        },
      });
      const appliedAtLeast = async (n: number) => {
        while (applied < n) await sleep(10);
      };
      while (last?.state !== "running") await sleep(50);
      while (last.backlog !== 0) await sleep(50);
      const base = applied;
      const pids: Record<string, number> = {
        service: process.pid,
        nats: nats.pid,
        [STORE]: storePid,
      };
      procs.forEach((p, i) => (pids[`worker${i + 1}`] = p.pid ?? -1));
      const cpu0 = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid) ?? 0]),
      );
      await profiler?.start();
      // Throughput: as fast as the writes go.
      const t0 = performance.now();
      for (let i = 0; i < FILES; i += 200)
        await Promise.all(
          Array.from({ length: Math.min(200, FILES - i) }, (_, k) =>
            writeFile(join(root, "d", `f${i + k}`), `file ${i + k}\n`),
          ),
        );
      await appliedAtLeast(base + FILES * RECORDS_PER_FILE);
      const seconds = (appliedAt - t0) / 1000;
      const cpu = Object.fromEntries(
        Object.entries(pids).map(([k, pid]) => [k, round1((cpuSeconds(pid) ?? 0) - cpu0[k]!)]),
      );
      if (profiler !== undefined && PROFILE_DIR !== undefined) {
        const profile = await profiler.stop(join(PROFILE_DIR, `service-${workers}w.cpuprofile`));
        const { top } = summarizeProfile(profile, 15);
        for (const l of top)
          console.log(`  service ${l.selfMs.toFixed(0).padStart(6)} ms  ${l.name}  ${l.where}`);
      }
      const records = applied - base;
      runs.push({
        workers,
        files: FILES,
        records,
        seconds: Math.round(seconds * 100) / 100,
        changesPerSecond: Math.round(records / seconds),
        changesPerSecondPerWorker: Math.round(records / seconds / workers),
        filesPerSecond: Math.round(FILES / seconds),
        cpu,
      });
      console.log(JSON.stringify(runs[runs.length - 1]));
      if (workers === WORKERS[0]) {
        // Lag at a fixed offered rate.
        behind.length = 0;
        const filesPerTick = Math.max(1, Math.round(RATE / RECORDS_PER_FILE / 10));
        const start = performance.now();
        let n = 0;
        while (performance.now() - start < SECONDS * 1000) {
          const tick = performance.now();
          await Promise.all(
            Array.from({ length: filesPerTick }, () =>
              writeFile(join(root, "d", `lag${n++}`), "x\n"),
            ),
          );
          await sleep(Math.max(0, 100 - (performance.now() - tick)));
        }
        const samples = [...behind].sort((a, b) => a - b);
        lag = {
          rate: Math.round((n * RECORDS_PER_FILE) / ((performance.now() - start) / 1000)),
          seconds: SECONDS,
          maxBehind: round1(samples[samples.length - 1] ?? 0),
          medianBehind: round1(samples[Math.floor(samples.length / 2)] ?? 0),
        };
        console.log(JSON.stringify({ lag: { workers, ...lag } }));
      }
      abort.abort();
      await service;
      changes.unsubscribe();
      for (const p of procs) await stopChild(p);
    }
  } finally {
    profiler?.close();
    await nc.close();
    await nats.stop();
    await azurite?.stop();
    await sink?.stop();
    await dir.cleanup();
  }
  console.log(
    JSON.stringify({
      cpus: cpus().length,
      load: loadavg().map(round1),
      store: STORE,
      rawChangesPerSecond: Math.round(raw * RECORDS_PER_FILE),
      runs,
      lag,
    }),
  );
};

await main();
