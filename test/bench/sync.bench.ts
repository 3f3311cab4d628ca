/**
 * `npm run bench:sync`: `hsmfleet sync` on the posix source (inotify), the service in this
 * process, `hsmfleet worker` processes, a real nats-server and a local Azurite:
 *   - throughput: files written as fast as this process can (each a CREAT, MODIFY and CLOSE_WRITE
 *     record, coalesced into one upload), changes (records) applied per second with 1 and 2
 *     workers, `--settle 0`;
 *   - lag: changes offered at a fixed rate (default 1,000 records/s) for a while; the service's
 *     seconds behind (age of the oldest record not yet applied), sampled every second.
 * Aim (issue 18): ≥ 2,000 changes/s per worker, lag under 10 s at 1,000 changes/s.
 *
 * Environment:
 *   HSMFLEET_BENCH_SYNC_FILES    files written for the throughput runs (default 4,000)
 *   HSMFLEET_BENCH_SYNC_RATE     offered records/s for the lag run (default 1,000)
 *   HSMFLEET_BENCH_SYNC_SECONDS  length of the lag run (default 20)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";

import { connectBus, ensureTopology } from "@hsmfleet/bus";
import { parseStorageTarget } from "@hsmfleet/blob";
import { runSyncService } from "@hsmfleet/coordinator";
import type { SyncStatusRecord } from "@hsmfleet/coordinator";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";

import { spawnTracked, stopChild } from "./proc.js";

const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));
const envInt = (name: string, fallback: number): number => {
  const n = Number(process.env[name] ?? fallback);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};
const FILES = envInt("HSMFLEET_BENCH_SYNC_FILES", 4_000);
const RATE = envInt("HSMFLEET_BENCH_SYNC_RATE", 1_000);
const SECONDS = envInt("HSMFLEET_BENCH_SYNC_SECONDS", 20);
const RECORDS_PER_FILE = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  workers: number;
  files: number;
  records: number;
  seconds: number;
  changesPerSecond: number;
  filesPerSecond: number;
}

const main = async (): Promise<void> => {
  const dir = await tempDir();
  const nats = await startNatsServer();
  const azurite = await startAzurite();
  const storage = parseStorageTarget(azurite.connectionString)!;
  const nc = await connectBus({ servers: nats.url });
  await ensureTopology(nc);
  const runs: Run[] = [];
  let lag: { rate: number; seconds: number; maxBehind: number; medianBehind: number } | undefined;
  try {
    for (const workers of [1, 2]) {
      const procs: ChildProcess[] = [];
      for (let i = 0; i < workers; i++)
        procs.push(
          spawnTracked(
            process.execPath,
            [CLI_BIN, "--nats", nats.url, "--storage", azurite.connectionString, "worker"],
            {
              stdio: ["ignore", "ignore", "inherit"],
              env: { ...process.env, HSMFLEET_LOG_LEVEL: "error" },
            },
          ),
        );
      const root = join(dir.path, `tree-${workers}`);
      await mkdir(join(root, "d"), { recursive: true });
      let last: SyncStatusRecord | undefined;
      const behind: number[] = [];
      const abort = new AbortController();
      const service = runSyncService({
        nc,
        root,
        container: `bench-sync-${workers}`,
        name: `bench${workers}`,
        settleMs: 0,
        removeDelayMs: 3_600_000,
        storage,
        signal: abort.signal,
        onStatus: (s) => {
          last = s;
          behind.push(s.secondsBehind);
        },
      });
      const inStep = async (records: number) => {
        for (;;) {
          if (last && last.recordsApplied >= records && last.backlog === 0) return;
          await sleep(20);
        }
      };
      while (last?.state !== "running") await sleep(50);
      await inStep(0);
      const base = last.recordsApplied;
      // Throughput: as fast as the writes go.
      const t0 = performance.now();
      for (let i = 0; i < FILES; i += 200)
        await Promise.all(
          Array.from({ length: Math.min(200, FILES - i) }, (_, k) =>
            writeFile(join(root, "d", `f${i + k}`), `file ${i + k}\n`),
          ),
        );
      await inStep(base + FILES * RECORDS_PER_FILE);
      const seconds = (performance.now() - t0) / 1000;
      const records = last.recordsApplied - base;
      runs.push({
        workers,
        files: FILES,
        records,
        seconds: Math.round(seconds * 10) / 10,
        changesPerSecond: Math.round(records / seconds),
        filesPerSecond: Math.round(FILES / seconds),
      });
      console.log(JSON.stringify(runs[runs.length - 1]));
      if (workers === 1) {
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
          maxBehind: Math.round((samples[samples.length - 1] ?? 0) * 10) / 10,
          medianBehind: Math.round((samples[Math.floor(samples.length / 2)] ?? 0) * 10) / 10,
        };
        console.log(JSON.stringify({ lag }));
      }
      abort.abort();
      await service;
      for (const p of procs) await stopChild(p);
    }
  } finally {
    await nc.close();
    await nats.stop();
    await azurite.stop();
    await dir.cleanup();
  }
  console.log(
    JSON.stringify({
      cpus: cpus().length,
      load: loadavg().map((l) => Math.round(l * 10) / 10),
      runs,
      lag,
    }),
  );
};

await main();
