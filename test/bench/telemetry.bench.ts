/**
 * `npm run bench:telemetry`: what telemetry costs an export. The same export runs with telemetry
 * off and on, alternating, in one run: one in-process worker, a real nats-server, the loopback
 * Blob benchmark sink (blob-sink.ts, discards data: the client side is all that is measured, so
 * any telemetry cost shows at its largest).
 *
 * "on" = everything hsmfleet has: a span per job, phase, work item and file ≥ 1 MiB, exported over
 * OTLP/HTTP protobuf; metrics exported over OTLP every 5 s; and a Prometheus endpoint scraped every
 * second. The OTLP receiver and the scraper run in a child process of their own
 * (telemetry-peer.ts): in a deployment they are a collector and a Prometheus server elsewhere, so
 * their CPU is not hsmfleet's. What IS hsmfleet's and is measured: the instrumentation, span and
 * metric encoding, the exporters' HTTP requests, serving /metrics.
 *
 * Measured per run: this process's CPU (worker + coordinator) from the job's start to the end of a
 * telemetry flush after it (the spans still queued and one metric export are counted), per MiB or
 * per file, and the job's rate.
 *
 * Environment:
 *   HSMFLEET_BENCH_RUNS     repetitions per side and case (default 3; plus one unmeasured warm-up each)
 *   HSMFLEET_BENCH_DIR      keep the generated trees here (default: a temp dir, removed at the end)
 *   HSMFLEET_BENCH_CASES    comma-separated subset of large,small (default both)
 *   HSMFLEET_BENCH_PROFILE  a directory: CPU-profile every measured run (.cpuprofile files there)
 *                           and print where "on" spends more than "off", by category and function
 */
import "./threadpool.js";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseStorageTarget } from "@hsmfleet/blob";
import { connectBus } from "@hsmfleet/bus";
import { runExportJob } from "@hsmfleet/coordinator";
import { countBytes, startTelemetry, traceFileTransfer } from "@hsmfleet/telemetry";
import { freePort, generateTree, startNatsServer, tempDir } from "@hsmfleet/testkit";
import type { TreeSpec } from "@hsmfleet/testkit";
import { Worker } from "@hsmfleet/worker";
import { spawnBlobSink } from "./blob-sink.js";
import { CpuProfiler, selfTimes } from "./cpu-profile.js";
import type { SelfTime } from "./cpu-profile.js";
import { cpuSeconds, int, median } from "./proc.js";
import { spawnTelemetryPeer } from "./telemetry-peer.js";
import type { TelemetryPeerCounts } from "./telemetry-peer.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "telemetry.json");
const RUNS = Number(process.env["HSMFLEET_BENCH_RUNS"] || 3);
const MiB = 1024 * 1024;

/** HSMFLEET_BENCH_ONLY_INSTRUMENTATION=1: only the per-file instrumentation measurement. */
const ONLY_INSTRUMENTATION = process.env["HSMFLEET_BENCH_ONLY_INSTRUMENTATION"] === "1";
const ONLY = (process.env["HSMFLEET_BENCH_CASES"] ?? "").split(",").filter((c) => c !== "");
const ALL_CASES: Array<{
  name: string;
  unit: "MiB/s" | "files/s";
  spec: TreeSpec;
  describe: string;
}> = [
  {
    name: "large",
    unit: "MiB/s",
    spec: { depth: 0, fanout: 0, filesPerDir: 2, sizes: [256 * MiB] },
    describe: "2 × 256 MiB",
  },
  {
    name: "small",
    unit: "files/s",
    spec: { depth: 1, fanout: 49, filesPerDir: 100, sizes: [4096] },
    describe: "5,000 × 4 KiB in 50 dirs",
  },
];

const CASES = ONLY_INSTRUMENTATION
  ? []
  : ALL_CASES.filter((c) => ONLY.length === 0 || ONLY.includes(c.name));

const log = (line: string): void => void process.stderr.write(`${line}\n`);

const PROFILE_DIR = process.env["HSMFLEET_BENCH_PROFILE"] || undefined;

type Side = "off" | "on";

/** Self time added up over a side's profiled runs, and the units those runs moved. */
interface SideProfile {
  units: number;
  times: Map<string, SelfTime>;
}

const addProfile = (into: SideProfile, profile: Map<string, SelfTime>, units: number): void => {
  into.units += units;
  for (const [key, t] of profile) {
    const line = into.times.get(key);
    if (line) line.selfMs += t.selfMs;
    else into.times.set(key, { ...t });
  }
};

/** Where "on" spends more than "off", per unit moved: by category and by function. */
const compareProfiles = (off: SideProfile, on: SideProfile, limit = 30) => {
  const perUnit = (p: SideProfile, ms: number): number => (ms * 1000) / (p.units || 1);
  const byCategory = (p: SideProfile): Map<string, number> => {
    const m = new Map<string, number>();
    for (const t of p.times.values()) m.set(t.category, (m.get(t.category) ?? 0) + t.selfMs);
    return m;
  };
  const offCats = byCategory(off);
  const onCats = byCategory(on);
  const categories = [...new Set([...offCats.keys(), ...onCats.keys()])]
    .map((name) => {
      const a = perUnit(off, offCats.get(name) ?? 0);
      const b = perUnit(on, onCats.get(name) ?? 0);
      return { name, offUs: a, onUs: b, addedUs: b - a };
    })
    .sort((x, y) => y.addedUs - x.addedUs);
  const functions = [...new Set([...off.times.keys(), ...on.times.keys()])]
    .map((key) => {
      const t = on.times.get(key) ?? off.times.get(key)!;
      const a = perUnit(off, off.times.get(key)?.selfMs ?? 0);
      const b = perUnit(on, on.times.get(key)?.selfMs ?? 0);
      return {
        name: t.name,
        where: t.where,
        category: t.category,
        offUs: a,
        onUs: b,
        addedUs: b - a,
      };
    })
    .sort((x, y) => y.addedUs - x.addedUs)
    .slice(0, limit);
  const total = (p: SideProfile): number =>
    perUnit(
      p,
      [...p.times.values()]
        .filter((t) => !t.name.startsWith("(idle)"))
        .reduce((a, t) => a + t.selfMs, 0),
    );
  return { offUs: total(off), onUs: total(on), categories, functions };
};

const main = async (): Promise<void> => {
  const owned = process.env["HSMFLEET_BENCH_DIR"]
    ? undefined
    : await tempDir("hsmfleet-otel-bench-");
  const base = owned?.path ?? resolve(process.env["HSMFLEET_BENCH_DIR"]!);
  await mkdir(base, { recursive: true });
  const nats = await startNatsServer();
  const sink = await spawnBlobSink();
  // The OTLP receiver and the Prometheus scraper stand for a collector and a Prometheus server on
  // other machines: their own process, so their CPU is not counted as hsmfleet's.
  const peer = await spawnTelemetryPeer();
  const profiler = PROFILE_DIR ? new CpuProfiler() : undefined;
  if (PROFILE_DIR) await mkdir(PROFILE_DIR, { recursive: true });
  const storage = parseStorageTarget(sink.connectionString)!;
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  const results: Array<Record<string, unknown>> = [];
  let otlp: TelemetryPeerCounts | undefined;
  let instrumentation:
    | {
        cpuPerFileOffUs: number;
        cpuPerFileOnUs: number;
        addedPerFileUs: number;
        shareOfExportCpuPerFile: number | undefined;
        runs: Record<"off" | "on", number[]>;
      }
    | undefined;
  try {
    for (const c of CASES) {
      const root = join(base, `otel-${c.name}`);
      if (!existsSync(root)) {
        log(`generating ${root} (${c.describe}) …`);
        await generateTree(root, c.spec);
      }
      const rates: Record<Side, number[]> = { off: [], on: [] };
      // CPU of this process (worker + coordinator: all of hsmfleet here; the sink, nats-server,
      // OTLP receiver and scraper are other processes) per unit moved: less sensitive to a busy
      // machine than wall-clock rates.
      const cpu: Record<Side, number[]> = { off: [], on: [] };
      // CPU of the telemetry peer (receiver + scraper) per unit: NOT counted, shown for scale.
      const peerCpu: number[] = [];
      // CPU of the flush after the job (ms per run), part of the "on" CPU above.
      const flushCpu: number[] = [];
      const profiles: Record<Side, SideProfile> = {
        off: { units: 0, times: new Map() },
        on: { units: 0, times: new Map() },
      };
      let seq = 0;
      const once = async (
        side: Side,
        measured: boolean,
      ): Promise<{
        rate: number;
        cpuPerUnit: number;
        peerCpuPerUnit: number;
        flushCpuMs: number;
      }> => {
        const metricsPort = side === "on" ? await freePort() : undefined;
        const telemetry = await startTelemetry({
          role: "coordinator",
          metricsPort,
          metricsHost: "127.0.0.1",
          env:
            side === "on"
              ? {
                  OTEL_EXPORTER_OTLP_ENDPOINT: peer.url,
                  OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
                  OTEL_METRIC_EXPORT_INTERVAL: "5000",
                }
              : {},
        });
        if (metricsPort) peer.scrape(`http://127.0.0.1:${metricsPort}/metrics`, 1000);
        const wnc = await connectBus({ servers: nats.url, reconnectForever: false });
        const worker = await Worker.create({ nc: wnc, storage, workerId: `bench-${process.pid}` });
        const running = worker.run();
        try {
          // Measured: the job, and the export of the telemetry it produced (the spans still in the
          // batch queue and one OTLP metric export), not process set-up (once per process).
          const peer0 = cpuSeconds(peer.pid) ?? 0;
          if (measured) await profiler?.start();
          const cpu0 = process.cpuUsage();
          const s = await runExportJob({
            nc,
            root,
            container: `otel-${c.name}-${side}-${++seq}-${process.pid}`,
            storage,
            maxErrors: 0,
          });
          const flush0 = process.cpuUsage();
          await telemetry.flush();
          const flushed = process.cpuUsage(flush0);
          const used = process.cpuUsage(cpu0);
          if (s.state !== "succeeded" || s.errors !== 0)
            throw new Error(`export failed: ${JSON.stringify(s)}`);
          const units = c.unit === "MiB/s" ? s.bytes / MiB : s.filesExported;
          if (measured && profiler && PROFILE_DIR) {
            const file = join(PROFILE_DIR, `telemetry-${c.name}-${side}-${seq}.cpuprofile`);
            addProfile(profiles[side], selfTimes(await profiler.stop(file)), units);
          }
          const peerUsed = (cpuSeconds(peer.pid) ?? 0) - peer0;
          return {
            rate: units / s.elapsedSeconds,
            cpuPerUnit: (used.user + used.system) / units,
            peerCpuPerUnit: (peerUsed * 1e6) / units,
            flushCpuMs: (flushed.user + flushed.system) / 1000,
          };
        } finally {
          peer.unscrape();
          await worker.shutdown();
          await running.catch(() => undefined);
          await wnc.close();
          await telemetry.shutdown();
        }
      };
      await once("off", false);
      await once("on", false);
      for (let i = 0; i < RUNS; i++) {
        for (const side of i % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
          const r = await once(side, true);
          rates[side].push(r.rate);
          cpu[side].push(r.cpuPerUnit);
          if (side === "on") {
            peerCpu.push(r.peerCpuPerUnit);
            flushCpu.push(r.flushCpuMs);
          }
          log(
            `${c.name} ${side}: ${r.rate.toFixed(1)} ${c.unit}, ${r.cpuPerUnit.toFixed(0)} µs CPU per ${c.unit === "MiB/s" ? "MiB" : "file"}` +
              (side === "on"
                ? ` (of which the final flush ${r.flushCpuMs.toFixed(1)} ms; + receiver/scraper ${r.peerCpuPerUnit.toFixed(1)} µs, not counted)`
                : ""),
          );
        }
      }
      const profile = profiler ? compareProfiles(profiles.off, profiles.on) : undefined;
      if (profile) {
        const u = c.unit === "MiB/s" ? "MiB" : "file";
        log(
          `profile ${c.name}: sampled CPU per ${u} off ${profile.offUs.toFixed(1)} µs, on ${profile.onUs.toFixed(1)} µs`,
        );
        log(`  by category (µs per ${u}: off → on, added):`);
        for (const k of profile.categories)
          log(
            `    ${k.name}: ${k.offUs.toFixed(1)} → ${k.onUs.toFixed(1)} (${k.addedUs >= 0 ? "+" : ""}${k.addedUs.toFixed(1)})`,
          );
        log(`  functions that grew most (µs per ${u}: off → on):`);
        for (const f of profile.functions)
          log(
            `    +${f.addedUs.toFixed(2)}  ${f.name} ${f.where} [${f.category}] (${f.offUs.toFixed(2)} → ${f.onUs.toFixed(2)})`,
          );
      }
      const off = median(rates.off);
      const on = median(rates.on);
      results.push({
        case: c.name,
        describe: c.describe,
        unit: c.unit,
        off,
        on,
        ratio: on / off,
        cpuPerUnitOff: median(cpu.off),
        cpuPerUnitOn: median(cpu.on),
        cpuRatio: median(cpu.on) / median(cpu.off),
        // Median of the on/off ratios of the runs of one iteration (adjacent in time): less
        // sensitive to a load that drifts during the run than the ratio of the medians.
        cpuRatioPaired: median(cpu.on.map((v, i) => v / cpu.off[i]!)),
        rateRatioPaired: median(rates.on.map((v, i) => v / rates.off[i]!)),
        peerCpuPerUnitOn: median(peerCpu),
        flushCpuMsOn: median(flushCpu),
        rates,
        cpu,
        ...(profile ? { profile } : {}),
      });
    }
    // Per-file instrumentation alone, on vs off, alternating: what telemetry adds to every
    // small file (the file-transfer wrapper: metrics, the span decision, byte counting), measured
    // precisely enough to compare with the end-to-end CPU per file above, which this machine's
    // noise cannot resolve to a few percent.
    const perFile = async (side: "off" | "on"): Promise<number> => {
      // The same set-up as the export's "on" side: OTLP and a Prometheus endpoint (two readers).
      const telemetry = await startTelemetry({
        role: "worker",
        metricsPort: side === "on" ? await freePort() : undefined,
        metricsHost: "127.0.0.1",
        env:
          side === "on"
            ? {
                OTEL_EXPORTER_OTLP_ENDPOINT: peer.url,
                OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
                OTEL_METRIC_EXPORT_INTERVAL: "5000",
              }
            : {},
      });
      try {
        const item = {};
        const path = Buffer.from("dir-00/file-0000");
        const n = 200_000;
        const onBytes = countBytes("export", "job-bench", () => undefined);
        const cpu0 = process.cpuUsage();
        for (let i = 0; i < n; i++) {
          await traceFileTransfer(
            { direction: "export", jobId: "job-bench", path, type: "file", size: 4096, item },
            () => {
              onBytes(4096);
              return Promise.resolve({ bytes: 4096 });
            },
          );
        }
        const used = process.cpuUsage(cpu0);
        return (used.user + used.system) / n;
      } finally {
        await telemetry.shutdown();
      }
    };
    const instr: Record<"off" | "on", number[]> = { off: [], on: [] };
    await perFile("off");
    for (let i = 0; i < 5; i++)
      for (const side of i % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const))
        instr[side].push(await perFile(side));
    const small = results.find((r) => r["case"] === "small");
    const added = median(instr.on) - median(instr.off);
    instrumentation = {
      cpuPerFileOffUs: median(instr.off),
      cpuPerFileOnUs: median(instr.on),
      addedPerFileUs: added,
      shareOfExportCpuPerFile:
        small === undefined ? undefined : added / Number(small["cpuPerUnitOff"]),
      runs: instr,
    };
  } finally {
    await nc.close();
    profiler?.close();
    otlp = await peer.counts();
    await peer.stop();
    await sink.stop();
    await nats.stop();
    await owned?.cleanup();
  }
  log("");
  log(
    `| case | telemetry off (median) | telemetry on (median) | on / off | paired | CPU µs/unit off | on | on / off | paired | flush ms |`,
  );
  log(`| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`);
  for (const r of results)
    log(
      `| ${String(r["describe"])} | ${int(Number(r["off"]))} ${String(r["unit"])} | ${int(Number(r["on"]))} ${String(r["unit"])} | ${Number(r["ratio"]).toFixed(3)} | ${Number(r["rateRatioPaired"]).toFixed(3)} | ${int(Number(r["cpuPerUnitOff"]))} | ${int(Number(r["cpuPerUnitOn"]))} | ${Number(r["cpuRatio"]).toFixed(3)} | ${Number(r["cpuRatioPaired"]).toFixed(3)} | ${Number(r["flushCpuMsOn"]).toFixed(1)} |`,
    );
  if (otlp)
    log(
      `OTLP received: ${otlp.otlpRequests} requests, ${int(otlp.otlpBytes / 1024)} KiB; ${otlp.scrapes} scrapes (${otlp.scrapeErrors} failed), ${int(otlp.scrapeBytes / 1024)} KiB`,
    );
  if (instrumentation !== undefined) {
    const share = instrumentation.shareOfExportCpuPerFile;
    log(
      `per-file instrumentation alone: off ${instrumentation.cpuPerFileOffUs.toFixed(2)} µs, on ${instrumentation.cpuPerFileOnUs.toFixed(2)} µs CPU per file: telemetry adds ${instrumentation.addedPerFileUs.toFixed(2)} µs per file` +
        (share === undefined
          ? ""
          : ` = ${(share * 100).toFixed(1)} % of the export's CPU per small file (telemetry off)`),
    );
  }
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    `${JSON.stringify({ at: new Date().toISOString(), runs: RUNS, load: loadavg(), results, instrumentation, otlp }, null, 2)}\n`,
  );
  log(`results in ${RESULTS_FILE}`);
};

await main();
