/**
 * Fleet scaling benchmark: K worker processes, each its own "VM" — bound to 127.0.0.N with
 * `--bind` and limited to the same NIC rate by an HTB class on `lo` (fleet-shaper.ts) — export
 *
 *   1. a tree of 8 MiB files to the benchmark sink (blob-sink.ts, its own process; it discards
 *      data, so the storage side costs almost nothing) with K = 1, 2, 4, and once with 4 unshaped
 *      workers (what this machine's CPUs and the sink allow: the "storage side" ceiling here);
 *   2. one large file (default 2 GiB) to Azurite with K = 1 and 4, in chunks any worker takes;
 *      the blob is downloaded and its MD5 compared with the file's.
 *
 * Prints a table and writes bench/results/fleet.json. Needs root, tc and nats-server; without
 * them it says why and exits 0 (skipped). The qdisc is removed when done, even on failure.
 *
 * Environment: HSMFLEET_FLEET_MBIT (per-VM limit, default 100: four of them stay under what a
 * 2-CPU machine moves unshaped), HSMFLEET_FLEET_DATASET_MIB (scaling tree, default 768), HSMFLEET_FLEET_BIG_MIB (large file, default 2048),
 * HSMFLEET_FLEET_CHUNK_MIB (chunk size, default 32), HSMFLEET_FLEET_VMS (default "1,2,4").
 */
import { createHash, randomFillSync } from "node:crypto";
import { mkdir, open, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BlobServiceClient } from "@azure/storage-blob";
import { parseStorageTarget } from "@hsmfleet/blob";
import type { StorageTarget } from "@hsmfleet/blob";
import { connectBus, ensureTopology } from "@hsmfleet/bus";
import type { NatsConnection } from "@hsmfleet/bus";
import { runExportJob } from "@hsmfleet/coordinator";
import { decodeWorkerHeartbeat, subjects } from "@hsmfleet/protocol";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { AzuriteFixture, NatsServerFixture, TempDir } from "@hsmfleet/testkit";
import { spawnBlobSink } from "./blob-sink.js";
import type { BlobSinkProcess } from "./blob-sink.js";
import { LoopbackShaper, shapingUnavailable } from "./fleet-shaper.js";
import { ProcSampler, killAllChildren, spawnTracked, stopChild } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "fleet.json");
const CLI_BIN = join(REPO_ROOT, "packages", "cli", "bin", "hsmfleet.js");
const MiB = 1024 * 1024;

const envNum = (name: string, fallback: number): number => {
  const raw = process.env[name];
  const n = raw === undefined || raw === "" ? fallback : Number(raw);
  if (!(n > 0)) throw new Error(`${name} must be a positive number, got ${raw}`);
  return n;
};

const MBIT = envNum("HSMFLEET_FLEET_MBIT", 100);
const DATASET_MIB = envNum("HSMFLEET_FLEET_DATASET_MIB", 768);
const BIG_MIB = envNum("HSMFLEET_FLEET_BIG_MIB", 2048);
const CHUNK_MIB = envNum("HSMFLEET_FLEET_CHUNK_MIB", 32);
const VM_COUNTS = (process.env["HSMFLEET_FLEET_VMS"] || "1,2,4").split(",").map(Number);
const FILE_MIB = 8;
/** The per-VM limit in bytes per second (HTB counts IP packets; headers included). */
const LIMIT_BPS = (MBIT * 1e6) / 8;
const AIM = { scalingEfficiency: 0.9, bigFileSpeedup: 3 };

const log = (s: string): void => void process.stderr.write(`[fleet] ${s}\n`);
const mibps = (bytesPerSecond: number): number => bytesPerSecond / MiB;
const addressOf = (vm: number): string => `127.0.0.${vm + 1}`;

interface FleetWorker {
  vm: string;
  address: string;
  pid: number;
  sampler: ProcSampler;
  stop(): Promise<void>;
}

/** Starts K worker processes, vm1..vmK bound to 127.0.0.2..K+1; resolves once all heartbeat. */
const startFleet = async (
  nc: NatsConnection,
  natsUrl: string,
  storage: string,
  k: number,
  bind: boolean,
): Promise<FleetWorker[]> => {
  const seen = new Set<string>();
  const sub = nc.subscribe(subjects.heartbeatAll, {
    callback: (_err, msg) => {
      seen.add(decodeWorkerHeartbeat(msg.data).vmName);
    },
  });
  const fleet: FleetWorker[] = [];
  for (let i = 1; i <= k; i++) {
    const vm = `vm${i}`;
    const address = addressOf(i);
    const child = spawnTracked(
      process.execPath,
      [
        CLI_BIN,
        "--nats",
        natsUrl,
        "--storage",
        storage,
        "worker",
        "--vm-name",
        vm,
        ...(bind ? ["--bind", address] : []),
      ],
      {
        stdio: ["ignore", "ignore", "inherit"],
        env: { ...process.env, HSMFLEET_LOG_LEVEL: "warn" },
      },
    );
    fleet.push({
      vm,
      address,
      pid: child.pid ?? -1,
      sampler: new ProcSampler(child.pid ?? -1, 200),
      stop: async () => {
        await stopChild(child, 5000);
      },
    });
  }
  const deadline = Date.now() + 60_000;
  while (fleet.some((w) => !seen.has(w.vm))) {
    if (Date.now() > deadline) throw new Error("workers did not report within 60 s");
    nc.publish(subjects.heartbeatPing);
    await new Promise((r) => setTimeout(r, 200));
  }
  sub.unsubscribe();
  return fleet;
};

/** Samples a byte counter every 100 ms; the transfer window is first to last change. */
class Window {
  readonly #samples: Array<{ t: number; bytes: number }> = [];
  readonly #timer: NodeJS.Timeout;
  #busy = false;

  constructor(read: () => Promise<number>) {
    this.#timer = setInterval(() => {
      if (this.#busy) return;
      this.#busy = true;
      read()
        .then((bytes) => this.#samples.push({ t: performance.now(), bytes }))
        .catch(() => undefined)
        .finally(() => (this.#busy = false));
    }, 100);
  }

  stop(): { seconds: number; bytes: number } {
    clearInterval(this.#timer);
    const s = this.#samples;
    const first = s.findIndex((x) => x.bytes > (s[0]?.bytes ?? 0));
    const last = s.at(-1);
    if (first < 1 || last === undefined) return { seconds: 0, bytes: 0 };
    // From the last sample before data moved to the first sample after it stopped.
    const end = s.findIndex((x) => x.bytes === last.bytes);
    return { seconds: (s[end]!.t - s[first - 1]!.t) / 1000, bytes: last.bytes - s[0]!.bytes };
  }
}

interface ScalingRow {
  vms: number;
  shaped: boolean;
  bytes: number;
  windowSeconds: number;
  jobSeconds: number;
  mibPerSecond: number;
  ceilingMiBPerSecond: number | undefined;
  ratioToCeiling: number | undefined;
  speedup: number | undefined;
  efficiencyPerVm: number | undefined;
  bytesBySource: Record<string, number>;
  boundAsAsked: boolean;
  peakRssMiB: number[];
}

interface BigRow {
  vms: number;
  bytes: number;
  chunks: number;
  windowSeconds: number;
  jobSeconds: number;
  mibPerSecond: number;
  md5Match: boolean;
  peakRssMiB: number[];
}

const main = async (): Promise<void> => {
  const reason = shapingUnavailable();
  const missing = await import("node:child_process").then(({ execFileSync }) => {
    try {
      execFileSync("nats-server", ["--version"], { stdio: "ignore" });
      return undefined;
    } catch {
      return "nats-server is not installed";
    }
  });
  if (reason !== undefined || missing !== undefined) {
    const why = reason ?? missing!;
    log(`SKIPPED: ${why}`);
    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify({ benchmark: "fleet", date: new Date().toISOString(), skipped: why }, null, 2)}\n`,
    );
    return;
  }
  const shaper = new LoopbackShaper();
  let nats: NatsServerFixture | undefined;
  let nc: NatsConnection | undefined;
  let sink: BlobSinkProcess | undefined;
  let azurite: AzuriteFixture | undefined;
  let dir: TempDir | undefined;
  const loadStart = loadavg()[0]!;
  try {
    nats = await startNatsServer();
    nc = await connectBus({ servers: nats.url, reconnectForever: false });
    await ensureTopology(nc, { ackWaitMs: 30_000, update: true });
    sink = await spawnBlobSink();
    const sinkStorage = sink.connectionString;
    const sinkTarget: StorageTarget = parseStorageTarget(sinkStorage)!;
    dir = await tempDir("hsmfleet-fleet-");

    // ---- the tree for the scaling runs
    const tree = join(dir.path, "tree");
    await mkdir(tree);
    const files = Math.max(1, Math.round(DATASET_MIB / FILE_MIB));
    const buf = Buffer.alloc(FILE_MIB * MiB);
    for (let i = 0; i < files; i++) {
      randomFillSync(buf, 0, 4096); // distinct heads; the rest may repeat (nothing dedups)
      await writeFile(join(tree, `f${String(i).padStart(4, "0")}.bin`), buf);
    }
    log(`tree: ${files} files of ${FILE_MIB} MiB; per-VM limit ${MBIT} Mbit/s`);

    const maxVms = Math.max(...VM_COUNTS);
    shaper.install(
      Array.from({ length: maxVms }, (_, i) => addressOf(i + 1)),
      MBIT,
    );
    log(`tc htb on lo: ${maxVms} classes of ${MBIT} Mbit/s by source address`);

    const scaling: ScalingRow[] = [];
    const runScaling = async (k: number, shaped: boolean): Promise<void> => {
      const fleet = await startFleet(nc!, nats!.url, sinkStorage, k, true);
      try {
        await sink!.reset();
        const window = new Window(async () => (await sink!.stats()).dataBytes);
        const t0 = performance.now();
        const summary = await runExportJob({
          nc: nc!,
          root: tree,
          container: `fleet-${k}-${shaped ? "s" : "u"}`,
          storage: sinkTarget,
          batchMaxBytes: FILE_MIB * MiB, // one file per item: the fleet balances to the last file
          chunkSizeBytes: 1024 * MiB,
        });
        const jobSeconds = (performance.now() - t0) / 1000;
        await new Promise((r) => setTimeout(r, 300));
        const w = window.stop();
        if (summary.state !== "succeeded" || summary.errors > 0)
          throw new Error(`export with ${k} VMs: ${summary.state}, ${summary.errors} errors`);
        const stats = await sink!.stats();
        const bySource: Record<string, number> = {};
        for (const [from, n] of Object.entries(stats.dataBytesBySource))
          bySource[from.replace(/^::ffff:/, "")] = n;
        // Every worker's data came from its own address (the coordinator's few log bytes come
        // from 127.0.0.1).
        const fromWorkers = fleet.reduce((n, f) => n + (bySource[f.address] ?? 0), 0);
        const boundAsAsked =
          fleet.every((f) => (bySource[f.address] ?? 0) > 0) &&
          fromWorkers >= files * FILE_MIB * MiB;
        const rate = w.bytes / w.seconds;
        const ceiling = shaped ? k * LIMIT_BPS : undefined;
        scaling.push({
          vms: k,
          shaped,
          bytes: w.bytes,
          windowSeconds: w.seconds,
          jobSeconds,
          mibPerSecond: mibps(rate),
          ceilingMiBPerSecond: ceiling === undefined ? undefined : mibps(ceiling),
          ratioToCeiling: ceiling === undefined ? undefined : rate / ceiling,
          speedup: undefined,
          efficiencyPerVm: undefined,
          bytesBySource: bySource,
          boundAsAsked,
          peakRssMiB: fleet.map((f) => Math.round(f.sampler.stop().peakRssBytes / MiB)),
        });
        log(
          `${k} VM(s)${shaped ? "" : " unshaped"}: ${mibps(rate).toFixed(1)} MiB/s over ${w.seconds.toFixed(1)} s (job ${jobSeconds.toFixed(1)} s); sources ${JSON.stringify(bySource)}`,
        );
      } finally {
        for (const f of fleet) await f.stop();
      }
    };
    for (const k of VM_COUNTS) await runScaling(k, true);
    // Unshaped: what the machine and the sink allow (the "storage side" here).
    shaper.remove();
    await runScaling(maxVms, false);
    const one = scaling.find((r) => r.vms === 1 && r.shaped);
    for (const r of scaling) {
      if (one === undefined || !r.shaped) continue;
      r.speedup = r.mibPerSecond / one.mibPerSecond;
      r.efficiencyPerVm = r.speedup / r.vms;
    }

    // ---- one large file, chunked, to Azurite (which keeps the bytes: MD5 check)
    azurite = await startAzurite();
    const big = join(dir.path, "big");
    await mkdir(big);
    const bigPath = join(big, "big.bin");
    const bigBytes = BIG_MIB * MiB;
    const fileMd5 = createHash("md5");
    {
      const fh = await open(bigPath, "w");
      const piece = Buffer.alloc(64 * MiB);
      for (let at = 0; at < bigBytes; at += piece.length) {
        const n = Math.min(piece.length, bigBytes - at);
        randomFillSync(piece, 0, n);
        fileMd5.update(piece.subarray(0, n));
        await fh.write(piece, 0, n, at);
      }
      await fh.close();
    }
    const wantMd5 = fileMd5.digest("hex");
    log(`large file: ${BIG_MIB} MiB in chunks of ${CHUNK_MIB} MiB, to Azurite`);
    const azuriteTarget = parseStorageTarget(azurite.connectionString)!;
    const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
    const bigRows: BigRow[] = [];
    shaper.install(
      Array.from({ length: maxVms }, (_, i) => addressOf(i + 1)),
      MBIT,
    );
    for (const k of [...new Set([1, maxVms])]) {
      const fleet = await startFleet(nc, nats.url, azurite.connectionString, k, true);
      const container = `big-${k}`;
      try {
        const classes = () => {
          const c = shaper.classBytes();
          return Promise.resolve(Object.values(c).reduce((a, b) => a + b, 0));
        };
        const window = new Window(classes);
        const t0 = performance.now();
        const summary = await runExportJob({
          nc,
          root: big,
          container,
          storage: azuriteTarget,
          chunkSizeBytes: CHUNK_MIB * MiB,
        });
        const jobSeconds = (performance.now() - t0) / 1000;
        await new Promise((r) => setTimeout(r, 300));
        const w = window.stop();
        if (summary.state !== "succeeded" || summary.errors > 0)
          throw new Error(
            `large file with ${k} VMs: ${summary.state}, ${JSON.stringify(summary.errorSamples)}`,
          );
        const peaks = fleet.map((f) => Math.round(f.sampler.stop().peakRssBytes / MiB));
        const md5 = createHash("md5");
        const download = await service
          .getContainerClient(container)
          .getBlobClient("big.bin")
          .download();
        for await (const part of download.readableStreamBody!) md5.update(part as Buffer);
        const md5Match = md5.digest("hex") === wantMd5;
        bigRows.push({
          vms: k,
          bytes: bigBytes,
          chunks: Math.ceil(BIG_MIB / CHUNK_MIB),
          windowSeconds: w.seconds,
          jobSeconds,
          mibPerSecond: mibps(bigBytes / jobSeconds),
          md5Match,
          peakRssMiB: peaks,
        });
        log(
          `large file, ${k} VM(s): job ${jobSeconds.toFixed(1)} s (${mibps(bigBytes / jobSeconds).toFixed(1)} MiB/s), MD5 ${md5Match ? "ok" : "MISMATCH"}, peak RSS ${peaks.join("/")} MiB`,
        );
        await service.getContainerClient(container).delete();
      } finally {
        for (const f of fleet) await f.stop();
      }
    }
    shaper.remove();

    // ---- report
    // HTB lets a little more than the nominal rate through (1–3 % here): the efficiency `hsmfleet
    // plan` reads is capped at 1; the raw ratio is kept beside it.
    const perVmRatioToLimit = one ? (one.mibPerSecond * MiB) / LIMIT_BPS : undefined;
    const perVmEfficiency =
      perVmRatioToLimit === undefined ? undefined : Math.min(1, perVmRatioToLimit);
    const big1 = bigRows.find((r) => r.vms === 1);
    const bigK = bigRows.find((r) => r.vms === maxVms);
    const bigSpeedup = big1 && bigK ? big1.jobSeconds / bigK.jobSeconds : undefined;
    const unshaped = scaling.find((r) => !r.shaped);
    const lines = [
      `fleet scaling (export, ${MBIT} Mbit/s per VM = ${mibps(LIMIT_BPS).toFixed(1)} MiB/s, ${files} × ${FILE_MIB} MiB files, sink)`,
      `| VMs | MiB/s | × 1 VM | efficiency/VM | of K × limit | job s | peak RSS MiB | bound |`,
      `|---|---|---|---|---|---|---|---|`,
      ...scaling.map(
        (r) =>
          `| ${r.vms}${r.shaped ? "" : " unshaped"} | ${r.mibPerSecond.toFixed(1)} | ${r.speedup?.toFixed(2) ?? "–"} | ${r.efficiencyPerVm === undefined ? "–" : `${(r.efficiencyPerVm * 100).toFixed(0)} %`} | ${r.ratioToCeiling === undefined ? "–" : `${(r.ratioToCeiling * 100).toFixed(0)} %`} | ${r.jobSeconds.toFixed(1)} | ${r.peakRssMiB.join("/")} | ${r.boundAsAsked ? "yes" : "NO"} |`,
      ),
      ``,
      `large file (${BIG_MIB} MiB, ${CHUNK_MIB} MiB chunks, Azurite)`,
      `| VMs | job s | MiB/s | MD5 | peak RSS MiB (budget 512) |`,
      `|---|---|---|---|---|`,
      ...bigRows.map(
        (r) =>
          `| ${r.vms} | ${r.jobSeconds.toFixed(1)} | ${r.mibPerSecond.toFixed(1)} | ${r.md5Match ? "match" : "MISMATCH"} | ${r.peakRssMiB.join("/")} |`,
      ),
      `speed-up ${maxVms} VMs vs 1: ${bigSpeedup?.toFixed(2) ?? "–"} (aim ≥ ${AIM.bigFileSpeedup})`,
    ];
    const loadEnd = loadavg()[0]!;
    if (Math.max(loadStart, loadEnd) > cpus().length)
      lines.push(
        `warning: load average ${loadStart.toFixed(1)}→${loadEnd.toFixed(1)} above the CPU count (${cpus().length}): other processes competed for the CPUs`,
      );
    process.stdout.write(`${lines.join("\n")}\n`);
    await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
    await writeFile(
      RESULTS_FILE,
      `${JSON.stringify(
        {
          benchmark: "fleet",
          date: new Date().toISOString(),
          node: process.version,
          cpus: cpus().length,
          loadAverage: { start: loadStart, end: loadEnd },
          perVmMbit: MBIT,
          aims: AIM,
          perVmEfficiency,
          perVmRatioToLimit,
          scaling,
          bigFile: { mib: BIG_MIB, chunkMiB: CHUNK_MIB, runs: bigRows, speedup: bigSpeedup },
          summary: [
            ...scaling
              .filter((r) => r.shaped && r.vms > 1)
              .map((r) => ({
                figure: `export, ${r.vms} shaped VMs`,
                value: `${r.mibPerSecond.toFixed(1)} MiB/s`,
                ratio: r.efficiencyPerVm,
                against: `${r.vms} × one VM (aim ≥ ${AIM.scalingEfficiency})`,
              })),
            {
              figure: "export, 1 shaped VM",
              value: `${one?.mibPerSecond.toFixed(1)} MiB/s`,
              ratio: perVmRatioToLimit,
              against: `the per-VM limit ${MBIT} Mbit/s`,
            },
            ...(unshaped
              ? [
                  {
                    figure: `export, ${unshaped.vms} unshaped workers`,
                    value: `${unshaped.mibPerSecond.toFixed(1)} MiB/s`,
                    ratio: unshaped.mibPerSecond / ((maxVms * LIMIT_BPS) / MiB),
                    against: `${maxVms} × the per-VM limit (> 1: the shaped runs were not storage-bound)`,
                  },
                ]
              : []),
            {
              figure: `${BIG_MIB} MiB file, ${maxVms} VMs vs 1`,
              value: `${bigK?.jobSeconds.toFixed(1)} s vs ${big1?.jobSeconds.toFixed(1)} s`,
              ratio: bigSpeedup,
              against: `1 VM (aim ≥ ${AIM.bigFileSpeedup}×)`,
            },
          ],
        },
        null,
        2,
      )}\n`,
    );
    log(`results written to ${RESULTS_FILE}`);
  } finally {
    shaper.remove();
    killAllChildren();
    await nc?.close().catch(() => undefined);
    await sink?.stop().catch(() => undefined);
    await azurite?.stop().catch(() => undefined);
    await nats?.stop().catch(() => undefined);
    await dir?.cleanup().catch(() => undefined);
  }
};

try {
  await main();
} catch (err) {
  process.stderr.write(
    `fleet benchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
