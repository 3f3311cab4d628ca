/**
 * Soak benchmark (not CI): many small files exported by 2 worker processes that are killed with
 * SIGKILL at random moments and started again, through the fault proxy (a small rate of 503/429/
 * resets) in front of the loopback benchmark sink (blob-sink.ts: answers the Blob API, discards the
 * data). Reports files/s, kills survived, retries (storage faults injected and retried, items
 * redelivered), errors (must be 0) and peak RSS of the workers and the coordinator.
 *
 *   npm run bench:soak
 *
 * Environment:
 *   HSMFLEET_SOAK_FILES        files to export (default 1,000,000; the soak size)
 *   HSMFLEET_SOAK_FILE_BYTES   size of each file (default 1024)
 *   HSMFLEET_SOAK_WORKERS      worker processes (default 2)
 *   HSMFLEET_SOAK_KILL_MS      mean time between kills (default 5000; 0 = no kills)
 *   HSMFLEET_SOAK_FAULT_RATE   storage fault rate through the proxy (default 0.01; 0 = no proxy)
 *   HSMFLEET_SOAK_DIR          where the tree is made (default a temp dir; kept when given)
 *   HSMFLEET_SOAK_BATCH        files per transfer batch (default 0 = the export's default, 1,000)
 *
 * Results go to bench/results/soak.json and stdout.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import { runExportJob } from "@hsmfleet/coordinator";
import { decodeItemResult, subjects } from "@hsmfleet/protocol";
import { startFaultProxy, startNatsServer } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import { memoryOf } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "soak.json");
const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));

const envNum = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number ≥ 0`);
  return n;
};

const FILES = envNum("HSMFLEET_SOAK_FILES", 1_000_000);
const FILE_BYTES = envNum("HSMFLEET_SOAK_FILE_BYTES", 1024);
const WORKERS = envNum("HSMFLEET_SOAK_WORKERS", 2);
const KILL_MS = envNum("HSMFLEET_SOAK_KILL_MS", 5000);
const FAULT_RATE = envNum("HSMFLEET_SOAK_FAULT_RATE", 0.01);
const BATCH = envNum("HSMFLEET_SOAK_BATCH", 0);
const PER_DIR = 1000;

const makeTree = async (root: string): Promise<void> => {
  const marker = `${root}.complete`; // beside the tree, not in it
  if (
    await stat(marker).then(
      () => true,
      () => false,
    )
  )
    return;
  const body = Buffer.alloc(FILE_BYTES, 0x61);
  let next = 0;
  const lane = async () => {
    while (next < FILES) {
      const i = next++;
      const d = join(root, `d${Math.floor(i / PER_DIR)}`);
      await mkdir(d, { recursive: true });
      await writeFile(join(d, `f${i}`), body);
    }
  };
  await Promise.all(Array.from({ length: 32 }, lane));
  await writeFile(marker, "");
};

const main = async (): Promise<void> => {
  const own = process.env["HSMFLEET_SOAK_DIR"] === undefined;
  const base =
    process.env["HSMFLEET_SOAK_DIR"] ?? (await mkdtemp(join(tmpdir(), "hsmfleet-soak-")));
  const root = join(base, "tree");
  await mkdir(root, { recursive: true });
  const made = Date.now();
  await makeTree(root);
  process.stderr.write(
    `tree of ${FILES} files ready in ${((Date.now() - made) / 1000).toFixed(1)} s\n`,
  );

  const nats = await startNatsServer();
  const sink = await spawnBlobSink();
  const proxy =
    FAULT_RATE > 0
      ? await startFaultProxy({
          target: sink.blobEndpoint,
          seed: 7,
          retryAfterSeconds: 1,
          rates: {
            status503: FAULT_RATE * 0.4,
            status429: FAULT_RATE * 0.3,
            reset: FAULT_RATE * 0.3,
          },
        })
      : undefined;
  const workerStorage = proxy
    ? proxy.rewriteConnectionString(sink.connectionString)
    : sink.connectionString;
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  await ensureTopology(nc, { ackWaitMs: 5000, maxDeliver: 50, update: true });

  const workers: ChildProcess[] = [];
  let peakWorkerRss = 0;
  const spawnWorker = (i: number) => {
    workers[i] = spawn(
      process.execPath,
      [CLI_BIN, "--nats", nats.url, "worker", "--vm-name", `soak-${i}`],
      {
        env: {
          ...process.env,
          AZURE_STORAGE_CONNECTION_STRING: workerStorage,
          HSMFLEET_LOG_LEVEL: "error",
        },
        stdio: ["ignore", "ignore", "inherit"],
      },
    );
  };
  for (let i = 0; i < WORKERS; i++) spawnWorker(i);
  const sampler = setInterval(() => {
    for (const w of workers) {
      const m = w.pid === undefined ? undefined : memoryOf(w.pid);
      if (m) peakWorkerRss = Math.max(peakWorkerRss, m.peakRss);
    }
  }, 250);

  let kills = 0;
  let stopped = false;
  const killer = (async () => {
    if (KILL_MS === 0) return;
    while (!stopped) {
      await new Promise((r) => setTimeout(r, KILL_MS * (0.5 + Math.random())));
      if (stopped) break;
      const i = Math.floor(Math.random() * WORKERS);
      const pid = workers[i]?.pid;
      const m = pid === undefined ? undefined : memoryOf(pid);
      if (m) peakWorkerRss = Math.max(peakWorkerRss, m.peakRss);
      workers[i]?.kill("SIGKILL");
      kills++;
      spawnWorker(i);
    }
  })();

  // Items redelivered: results whose attempt is above 1.
  let redelivered = 0;
  const sub = nc.subscribe(`${subjects.resultsAll}`, {
    callback: (_err, msg) => {
      try {
        if (!msg.subject.endsWith(".item")) return;
        if (decodeItemResult(msg.data).attempt > 1) redelivered++;
      } catch {
        // not an item result
      }
    },
  });

  const started = Date.now();
  let lastReport = started;
  const summary = await runExportJob({
    nc,
    root,
    container: "soak",
    storage: parseStorageTarget(sink.connectionString)!,
    maxErrors: -1,
    batchMaxEntries: BATCH === 0 ? undefined : BATCH,
    onProgress: (p) => {
      if (Date.now() - lastReport < 30_000) return;
      lastReport = Date.now();
      process.stdout.write(
        `${Math.round(p.elapsedMs / 1000)} s: ${p.filesDone} of ${p.filesFound} files found, ` +
          `${kills} kills, ${redelivered} items redelivered, ${p.errors} errors\n`,
      );
    },
  });
  const seconds = (Date.now() - started) / 1000;
  const killsSurvived = kills;
  stopped = true;
  clearInterval(sampler);
  sub.unsubscribe();
  for (const w of workers) w.kill("SIGKILL");
  await killer;

  const injected = proxy?.counters();
  const result = {
    date: new Date().toISOString(),
    files: FILES,
    fileBytes: FILE_BYTES,
    workers: WORKERS,
    meanKillIntervalMs: KILL_MS,
    faultRate: FAULT_RATE,
    batchFiles: BATCH === 0 ? 1000 : BATCH,
    state: summary.state,
    filesExported: summary.filesExported,
    seconds: Number(seconds.toFixed(1)),
    filesPerSecond: Math.round(summary.filesExported / seconds),
    killsSurvived,
    storageRequests: injected?.requests ?? null,
    storageFaultsInjectedAndRetried: proxy ? proxy.totalInjected() : 0,
    storageFaultsByKind: injected?.injected ?? null,
    itemsRedelivered: redelivered,
    errors: summary.errors,
    errorSamples: summary.errorSamples.slice(0, 5),
    peakWorkerRssMiB: Math.round(peakWorkerRss / 1048576),
    peakCoordinatorRssMiB: Math.round((memoryOf(process.pid)?.peakRss ?? 0) / 1048576),
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(RESULTS_FILE, `${JSON.stringify(result, null, 2)}\n`);

  await nc.close();
  await proxy?.stop();
  await sink.stop();
  await nats.stop();
  if (own) await rm(base, { recursive: true, force: true });
  if (summary.errors !== 0 || summary.filesExported !== FILES) process.exitCode = 1;
};

await main();
