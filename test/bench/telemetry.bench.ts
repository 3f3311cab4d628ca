/**
 * `npm run bench:telemetry`: what telemetry costs an export. The same export runs with telemetry
 * off and on, alternating, in one run: one in-process worker, a real nats-server, the loopback
 * Blob benchmark sink (blob-sink.ts, discards data: the client side is all that is measured, so
 * any telemetry cost shows at its largest).
 *
 * "on" = everything hsmfleet has: a span per job, phase, work item and file, exported over
 * OTLP/HTTP protobuf to a loopback receiver (this process: its CPU counts against telemetry);
 * metrics exported over OTLP every 5 s; and a Prometheus endpoint scraped every second.
 *
 * Environment:
 *   HSMFLEET_BENCH_RUNS   repetitions per side and case (default 3; plus one unmeasured warm-up each)
 *   HSMFLEET_BENCH_DIR    keep the generated trees here (default: a temp dir, removed at the end)
 *   HSMFLEET_BENCH_CASES  comma-separated subset of large,small (default both)
 */
import "./threadpool.js";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
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
import { int, median } from "./proc.js";

const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "telemetry.json");
const RUNS = Number(process.env["HSMFLEET_BENCH_RUNS"] || 3);
const MiB = 1024 * 1024;

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

const CASES = ALL_CASES.filter((c) => ONLY.length === 0 || ONLY.includes(c.name));

const log = (line: string): void => void process.stderr.write(`${line}\n`);

/** An OTLP/HTTP receiver that only counts (requests, bytes). */
const startReceiver = async () => {
  const counts = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on("data", (c: Buffer) => (counts.bytes += c.length));
    req.on("end", () => {
      counts.requests++;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
};

const main = async (): Promise<void> => {
  const owned = process.env["HSMFLEET_BENCH_DIR"]
    ? undefined
    : await tempDir("hsmfleet-otel-bench-");
  const base = owned?.path ?? resolve(process.env["HSMFLEET_BENCH_DIR"]!);
  await mkdir(base, { recursive: true });
  const nats = await startNatsServer();
  const sink = await spawnBlobSink();
  const receiver = await startReceiver();
  const storage = parseStorageTarget(sink.connectionString)!;
  const nc = await connectBus({ servers: nats.url, reconnectForever: false });
  const results: Array<Record<string, unknown>> = [];
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
      const rates: Record<"off" | "on", number[]> = { off: [], on: [] };
      // CPU of this process (worker + coordinator + receiver) per unit moved: less sensitive to a
      // busy machine than wall-clock rates.
      const cpu: Record<"off" | "on", number[]> = { off: [], on: [] };
      let seq = 0;
      const once = async (side: "off" | "on"): Promise<{ rate: number; cpuPerUnit: number }> => {
        const cpu0 = process.cpuUsage();
        const metricsPort = side === "on" ? await freePort() : undefined;
        const telemetry = await startTelemetry({
          role: "coordinator",
          metricsPort,
          metricsHost: "127.0.0.1",
          env:
            side === "on"
              ? {
                  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
                  OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
                  OTEL_METRIC_EXPORT_INTERVAL: "5000",
                }
              : {},
        });
        const scraper = metricsPort
          ? setInterval(() => {
              void fetch(`http://127.0.0.1:${metricsPort}/metrics`)
                .then((r) => r.text())
                .catch(() => undefined);
            }, 1000)
          : undefined;
        const wnc = await connectBus({ servers: nats.url, reconnectForever: false });
        const worker = await Worker.create({ nc: wnc, storage, workerId: `bench-${process.pid}` });
        const running = worker.run();
        try {
          const s = await runExportJob({
            nc,
            root,
            container: `otel-${c.name}-${side}-${++seq}-${process.pid}`,
            storage,
            maxErrors: 0,
          });
          if (s.state !== "succeeded" || s.errors !== 0)
            throw new Error(`export failed: ${JSON.stringify(s)}`);
          const used = process.cpuUsage(cpu0);
          const units = c.unit === "MiB/s" ? s.bytes / MiB : s.filesExported;
          return { rate: units / s.elapsedSeconds, cpuPerUnit: (used.user + used.system) / units };
        } finally {
          clearInterval(scraper);
          await worker.shutdown();
          await running.catch(() => undefined);
          await wnc.close();
          await telemetry.shutdown();
        }
      };
      await once("off");
      await once("on");
      for (let i = 0; i < RUNS; i++) {
        for (const side of i % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
          const r = await once(side);
          rates[side].push(r.rate);
          cpu[side].push(r.cpuPerUnit);
          log(
            `${c.name} ${side}: ${r.rate.toFixed(1)} ${c.unit}, ${r.cpuPerUnit.toFixed(0)} µs CPU per ${c.unit === "MiB/s" ? "MiB" : "file"}`,
          );
        }
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
        rates,
        cpu,
      });
    }
    // Per-file instrumentation alone, on vs off, alternating: what telemetry adds to every
    // small file (the file-transfer wrapper: metrics, the span decision, byte counting), measured
    // precisely enough to compare with the end-to-end CPU per file above, which this machine's
    // noise cannot resolve to a few percent.
    const perFile = async (side: "off" | "on"): Promise<number> => {
      const telemetry = await startTelemetry({
        role: "worker",
        env:
          side === "on"
            ? {
                OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
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
    await receiver.close();
    await sink.stop();
    await nats.stop();
    await owned?.cleanup();
  }
  log("");
  log(
    `| case | telemetry off (median) | telemetry on (median) | on / off | CPU µs/unit off | on | on / off |`,
  );
  log(`| --- | --- | --- | --- | --- | --- | --- |`);
  for (const r of results)
    log(
      `| ${String(r["describe"])} | ${int(Number(r["off"]))} ${String(r["unit"])} | ${int(Number(r["on"]))} ${String(r["unit"])} | ${Number(r["ratio"]).toFixed(3)} | ${int(Number(r["cpuPerUnitOff"]))} | ${int(Number(r["cpuPerUnitOn"]))} | ${Number(r["cpuRatio"]).toFixed(3)} |`,
    );
  log(
    `OTLP received: ${receiver.counts.requests} requests, ${int(receiver.counts.bytes / 1024)} KiB`,
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
    `${JSON.stringify({ at: new Date().toISOString(), runs: RUNS, load: loadavg(), results, instrumentation, otlp: receiver.counts }, null, 2)}\n`,
  );
  log(`results in ${RESULTS_FILE}`);
};

await main();
