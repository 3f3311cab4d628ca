/**
 * `npm run bench:hsm`: HSM action items dispatched and completed per second through the action
 * pipeline (coordinator in this process, `hsmfleet worker` processes, a real nats-server):
 *   - release (metadata-only: drop the data, set RELEASED) of many files,
 *   - archive of 4 KiB files to a local Azurite (one Put Blob each; Azurite bounds this one),
 * with 1 and 2 worker processes. Aim: ≥ 5,000 release actions/s end to end.
 *
 * Environment:
 *   HSMFLEET_BENCH_RELEASE_FILES   files released per run (default 20,000)
 *   HSMFLEET_BENCH_ARCHIVE_FILES   4 KiB files archived per run (default 1,000)
 *   HSMFLEET_BENCH_RUNS            repetitions per configuration (default 3)
 *   HSMFLEET_BENCH_WORKER_NODE_ARGS  extra node options for the worker processes, space-separated
 *                                  (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile them)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import type { ChildProcess } from "node:child_process";

import { connectBus, ensureHsmPartitions, ensureTopology } from "@hsmfleet/bus";
import { HsmFlag } from "@hsmfleet/core";
import { runHsmJob } from "@hsmfleet/coordinator";
import type { HsmJobSummary } from "@hsmfleet/coordinator";
import { HsmEmulationBackend, hsmAtAbsolutePaths } from "@hsmfleet/fs";
import type { HsmAtAbsolutePaths } from "@hsmfleet/fs";
import { HSM_DEFAULT_PARTITIONS } from "@hsmfleet/protocol";
import { startAzurite, startNatsServer, tempDir } from "@hsmfleet/testkit";

import { cpuSeconds, int, killAllChildren, median, spawnTracked, stopChild } from "./proc.js";

const CLI_BIN = fileURLToPath(new URL("./bin.js", import.meta.resolve("@hsmfleet/cli")));
const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const RESULTS_FILE = join(REPO_ROOT, "bench", "results", "hsm.json");

const envInt = (name: string, fallback: number): number => {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer`);
  return n;
};

const RELEASE_FILES = envInt("HSMFLEET_BENCH_RELEASE_FILES", 20_000);
const ARCHIVE_FILES = envInt("HSMFLEET_BENCH_ARCHIVE_FILES", 1_000);
const RUNS = envInt("HSMFLEET_BENCH_RUNS", 3);
const WORKER_NODE_ARGS = (process.env["HSMFLEET_BENCH_WORKER_NODE_ARGS"] ?? "")
  .split(" ")
  .filter((a) => a !== "");
const XATTR = "trusted.hsm";
const AIM_RELEASES_PER_S = 5_000;

const makeFiles = async (root: string, count: number, size: number): Promise<Buffer[]> => {
  const paths: Buffer[] = [];
  const data = Buffer.alloc(size, 0x61);
  for (let d = 0; d < 100; d++) await mkdir(join(root, `d${d}`), { recursive: true });
  for (let i = 0; i < count; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, count - i) }, async (_, k) => {
        const p = join(root, `d${(i + k) % 100}`, `f${i + k}`);
        await writeFile(p, data);
        paths[i + k] = Buffer.from(p);
      }),
    );
  }
  return paths;
};

const setAll = async (hsm: HsmAtAbsolutePaths, paths: Buffer[], set: number, clear: number) => {
  for (let i = 0; i < paths.length; i += 1000) {
    await Promise.all(paths.slice(i, i + 1000).map((p) => hsm.setFlags(p, set, clear, 1)));
  }
};

/** Every file gets its 4 KiB of data back and is archived (clean): each run releases real data. */
const rearm = async (hsm: HsmAtAbsolutePaths, paths: Buffer[], size: number) => {
  const data = Buffer.alloc(size, 0x61);
  for (let i = 0; i < paths.length; i += 1000) {
    await Promise.all(
      paths.slice(i, i + 1000).map(async (p) => {
        await writeFile(p, data);
        await hsm.setFlags(p, 0, 0xff, 1);
        await hsm.archive(p);
      }),
    );
  }
};

/** User + system CPU seconds of this process. */
const ownCpu = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
};

/** The emulation backend's release alone (no NATS, one process): items/s and CPU µs per item. */
const releaseAlone = async (
  hsm: HsmAtAbsolutePaths,
  paths: Buffer[],
  mode: "release" | "releaseMany",
): Promise<{ perSecond: number; cpuUsPerItem: number }> => {
  await rearm(hsm, paths, 4096);
  const c0 = ownCpu();
  const t0 = performance.now();
  if (mode === "release") {
    // 64 at once, one call per file (what a caller with single paths gets).
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < paths.length) {
          if (!(await hsm.release(paths[next++]!))) throw new Error("not released");
        }
      }),
    );
  } else {
    // Lists of 256 as the worker gets them, 16 at once (one per partition).
    const lists: Buffer[][] = [];
    for (let i = 0; i < paths.length; i += 256) lists.push(paths.slice(i, i + 256));
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < lists.length) {
          const r = await hsm.releaseMany(lists[next++]!);
          const bad = r.find((x) => x !== true);
          if (bad !== undefined) throw bad instanceof Error ? bad : new Error("not released");
        }
      }),
    );
  }
  const secs = (performance.now() - t0) / 1000;
  return {
    perSecond: paths.length / secs,
    cpuUsPerItem: ((ownCpu() - c0) * 1e6) / paths.length,
  };
};

const main = async () => {
  const dir = await tempDir("hsmfleet-bench-hsm-");
  const server = await startNatsServer();
  const azurite = await startAzurite();
  const nc = await connectBus({ servers: server.url, reconnectForever: false });
  const children: ChildProcess[] = [];
  const results: Record<string, unknown>[] = [];
  type Alone = { median: number; cpuUsPerItem: number };
  let aloneSummary: { release: Alone; releaseMany: Alone } | undefined;
  try {
    const { jsm, topology } = await ensureTopology(nc);
    // The partitions exist before the workers start, as in a running fleet: a worker looks for new
    // partitions every 10 s, and the first job would otherwise wait for that.
    await ensureHsmPartitions(jsm, HSM_DEFAULT_PARTITIONS, topology);
    const hsm = hsmAtAbsolutePaths(new HsmEmulationBackend({ xattr: XATTR }));
    process.stderr.write(`generating ${RELEASE_FILES} + ${ARCHIVE_FILES} files of 4 KiB…\n`);
    const releasePaths = await makeFiles(join(dir.path, "rel"), RELEASE_FILES, 4096);
    const archivePaths = await makeFiles(join(dir.path, "arc"), ARCHIVE_FILES, 4096);
    const { Exists: E, Archived: A, Released: R, Dirty: D } = HsmFlag;

    const alone: Record<string, { perSecond: number; cpuUsPerItem: number }[]> = {
      release: [],
      releaseMany: [],
    };
    for (let run = 0; run < RUNS; run++) {
      for (const mode of ["release", "releaseMany"] as const) {
        alone[mode]!.push(await releaseAlone(hsm, releasePaths, mode));
      }
      process.stderr.write(
        `  release() alone, run ${run + 1}: ${int(alone["release"]!.at(-1)!.perSecond)}/s (${alone["release"]!.at(-1)!.cpuUsPerItem.toFixed(0)} µs CPU/item), releaseMany ${int(alone["releaseMany"]!.at(-1)!.perSecond)}/s (${alone["releaseMany"]!.at(-1)!.cpuUsPerItem.toFixed(0)} µs CPU/item)\n`,
      );
    }
    aloneSummary = {
      release: {
        median: median(alone["release"]!.map((x) => x.perSecond)),
        cpuUsPerItem: median(alone["release"]!.map((x) => x.cpuUsPerItem)),
      },
      releaseMany: {
        median: median(alone["releaseMany"]!.map((x) => x.perSecond)),
        cpuUsPerItem: median(alone["releaseMany"]!.map((x) => x.cpuUsPerItem)),
      },
    };

    for (const workers of [1, 2]) {
      for (let w = 0; w < workers; w++) {
        children.push(
          spawnTracked(
            process.execPath,
            [
              ...WORKER_NODE_ARGS,
              CLI_BIN,
              "--nats",
              server.url,
              "--storage",
              azurite.connectionString,
              "worker",
              "--worker-id",
              `bench-${w}`,
            ],
            {
              stdio: ["ignore", "ignore", "inherit"],
              env: { ...process.env, HSMFLEET_LOG_LEVEL: "warn" },
            },
          ),
        );
      }
      await new Promise((r) => setTimeout(r, 1500)); // workers connect and pull
      const release: number[] = [];
      const releaseCpu: number[] = [];
      const archive: number[] = [];
      const pids = [server.pid, ...children.map((c) => c.pid!)];
      const fleetCpu = () => ownCpu() + pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
      for (let run = 0; run < RUNS; run++) {
        await rearm(hsm, releasePaths, 4096);
        const c0 = fleetCpu();
        const t0 = performance.now();
        const s: HsmJobSummary = await runHsmJob({
          nc,
          request: "release",
          root: dir.path,
          paths: releasePaths,
          backend: "hsm-emulation",
          hsmXattr: XATTR,
        });
        const secs = (performance.now() - t0) / 1000;
        if (s.done !== RELEASE_FILES) throw new Error(`release run: ${JSON.stringify(s)}`);
        release.push(RELEASE_FILES / secs);
        releaseCpu.push(((fleetCpu() - c0) * 1e6) / RELEASE_FILES);

        await setAll(hsm, archivePaths, 0, E | A | R | D);
        const t1 = performance.now();
        const a = await runHsmJob({
          nc,
          request: "archive",
          root: dir.path,
          paths: archivePaths,
          backend: "hsm-emulation",
          hsmXattr: XATTR,
          container: `bench-${workers}-${run}`,
        });
        const secs1 = (performance.now() - t1) / 1000;
        if (a.done !== ARCHIVE_FILES)
          throw new Error(`archive run: ${JSON.stringify(a.errorSamples[0])}`);
        archive.push(ARCHIVE_FILES / secs1);
        process.stderr.write(
          `  ${workers} worker(s), run ${run + 1}: release ${int(release.at(-1)!)} items/s (${releaseCpu.at(-1)!.toFixed(0)} µs CPU/item: coordinator + workers + nats-server), 4 KiB archive ${int(archive.at(-1)!)} items/s\n`,
        );
      }
      results.push({
        workers,
        releasePerSecond: { median: median(release), runs: release },
        releaseCpuUsPerItem: { median: median(releaseCpu), runs: releaseCpu },
        archive4KiBPerSecond: { median: median(archive), runs: archive },
      });
      while (children.length > 0) await stopChild(children.pop()!);
    }
  } finally {
    killAllChildren();
    await nc.close();
    await azurite.stop();
    await server.stop();
    await dir.cleanup();
  }
  const lines = [
    "",
    `HSM action pipeline (${cpus().length} CPUs, load ${loadavg()[0]!.toFixed(1)}); ${RELEASE_FILES} releases, ${ARCHIVE_FILES} 4 KiB archives to Azurite, ${RUNS} runs`,
    "| workers | release items/s (median) | CPU µs per release (all processes) | 4 KiB archive items/s (median) |",
    "| --- | --- | --- | --- |",
  ];
  for (const r of results as {
    workers: number;
    releasePerSecond: { median: number };
    releaseCpuUsPerItem: { median: number };
    archive4KiBPerSecond: { median: number };
  }[]) {
    lines.push(
      `| ${r.workers} | ${int(r.releasePerSecond.median)} | ${r.releaseCpuUsPerItem.median.toFixed(0)} | ${int(r.archive4KiBPerSecond.median)} |`,
    );
  }
  if (aloneSummary) {
    lines.push(
      `release alone (one process, no NATS): release() 64 at once ${int(aloneSummary.release.median)}/s (${aloneSummary.release.cpuUsPerItem.toFixed(0)} µs CPU/item); releaseMany lists of 256, 16 at once ${int(aloneSummary.releaseMany.median)}/s (${aloneSummary.releaseMany.cpuUsPerItem.toFixed(0)} µs CPU/item)`,
    );
  }
  const best = Math.max(
    ...(results as { releasePerSecond: { median: number } }[]).map(
      (r) => r.releasePerSecond.median,
    ),
  );
  lines.push(
    `aim ≥ ${int(AIM_RELEASES_PER_S)} release actions/s: ${best >= AIM_RELEASES_PER_S ? "met" : "NOT met"} (${int(best)})`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
  await mkdir(join(REPO_ROOT, "bench", "results"), { recursive: true });
  await writeFile(
    RESULTS_FILE,
    `${JSON.stringify({ date: new Date().toISOString(), cpus: cpus().length, releaseFiles: RELEASE_FILES, archiveFiles: ARCHIVE_FILES, runs: RUNS, loadAverage: loadavg()[0], releaseAlone: aloneSummary, results }, null, 2)}\n`,
  );
};

await main();
